// Stop strings over streamed text (OpenAI `stop`): text is released as soon as it can no
// longer be the start of a stop string, and generation ends the moment one completes.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace splitwise::router {

// Semantics are those of text arriving one character at a time: the match is the first
// stop string to *complete*; when several complete at the same character, the longest
// (earliest-starting) one wins. So the result never depends on how the text is chunked.
// The stop string itself is not emitted, nor is anything after it.
//
// Pieces must be whole UTF-8 characters (StreamDecoder's output) and stop strings valid
// UTF-8: every cut then falls on a character boundary, because a held-back suffix or a
// match starts where a stop string starts, i.e. on a lead byte.
class StopMatcher {
 public:
  // Empty stop strings are dropped: they would match before any text.
  explicit StopMatcher(std::vector<std::string> stops);

  struct Output {
    std::string text;      // safe to send to the client now
    bool stopped = false;  // a stop string completed; later pushes return nothing
    int stop_index = -1;   // which one (index into the constructor's list), when stopped
  };

  Output push(std::string_view piece);
  // At the end of generation: the held-back text, which turned out not to be a stop.
  std::string flush();

  bool stopped() const { return stopped_; }
  size_t held_bytes() const { return held_.size(); }

 private:
  // Longest suffix of held_ that is a proper prefix of some stop string.
  size_t partial_suffix() const;

  std::vector<std::string> stops_;
  std::vector<int> original_index_;  // stops_[i] was constructor argument original_index_[i]
  std::string held_;                 // text not yet released; never contains a whole stop string
  bool stopped_ = false;
};

}  // namespace splitwise::router
