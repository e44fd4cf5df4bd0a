// The official `openai` npm client against a real router with one prompt and one token
// worker: what a user's code sees must match what our own C++ tests see.
//
// Run: node --test openai_client.test.mjs   (after `npm ci` in this folder)
// Env: SPLITWISE_WORKER_BIN, SPLITWISE_ROUTER_BIN (default: <repo>/build/...),
//      SPLITWISE_SHARED (default: <repo>/../shared).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import OpenAI, { APIError } from 'openai';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const shared = process.env.SPLITWISE_SHARED || path.join(root, '../shared');
const modelPath = path.join(shared, 'models/stories260K/stories260K.bin');
const goldenPath = path.join(shared, 'models/golden/s260_greedy_n64_prompt_once.stdout.txt');
const workerBin =
  process.env.SPLITWISE_WORKER_BIN || path.join(root, 'build/workers/worker/splitwise-worker');
const routerBin =
  process.env.SPLITWISE_ROUTER_BIN || path.join(root, 'build/workers/router/splitwise-router');

const MODEL = 'stories260K';
const PROMPT = 'Once upon a time';
const READY_TIMEOUT_MS = 30_000;

// The ctest wrapper checks the model first and exits 77; this covers direct runs.
const skip = existsSync(modelPath) ? false : `model not found at ${modelPath} (set SPLITWISE_SHARED)`;
if (skip) console.log(`SKIP: ${skip}`);

const children = [];
// A crash of this process must not leave daemons behind.
process.on('exit', () => children.forEach((c) => c.exitCode === null && c.kill('SIGKILL')));

// Spawns a daemon and resolves with its HTTP port once it prints its ready line.
function startDaemon(bin, args) {
  const name = path.basename(bin);
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let stderr = '';  // kept (last 8 KiB) to explain a daemon that never gets ready
  child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-8192)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${name} not ready after ${READY_TIMEOUT_MS} ms\n${stderr}`)),
      READY_TIMEOUT_MS);
    const fail = (why) => { clearTimeout(timer); reject(new Error(`${name} ${why}\n${stderr}`)); };
    child.on('error', (e) => fail(`could not start: ${e.message}`));
    child.on('exit', (code, signal) => fail(`exited (${code ?? signal}) before it was ready`));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = /^splitwise-\S+ ready .*http=[^ ]*:(\d+)/.exec(line);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    });
  });
}

async function stopAll() {
  await Promise.all(children.map((child) => {
    if (child.exitCode !== null || child.signalCode !== null) return undefined;
    return new Promise((resolve) => {
      const hard = setTimeout(() => child.kill('SIGKILL'), 5000);
      child.once('exit', () => { clearTimeout(hard); resolve(); });
      child.kill('SIGTERM');
    });
  }));
}

// The router polls workers every 250 ms; requests before that would find no pair.
async function waitHealthy(port) {
  const deadline = Date.now() + 10_000;
  let last = 'no answer';
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/health`);
      const h = (await res.json()).healthy_workers ?? {};
      if (h.prompt >= 1 && h.token >= 1) return;
      last = JSON.stringify(h);
    } catch (e) {
      last = e.message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`router never saw a healthy prompt + token worker: ${last}`);
}

describe('openai npm client against the router', { skip }, () => {
  let client;
  let golden;

  before(async () => {
    golden = readFileSync(goldenPath, 'utf8');
    const common = ['-m', modelPath, '--host', '127.0.0.1', '--port', '0'];
    const [promptPort, tokenPort] = await Promise.all([
      startDaemon(workerBin, ['--role', 'prompt', ...common]),
      startDaemon(workerBin, ['--role', 'token', ...common]),
    ]);
    const routerPort = await startDaemon(routerBin, [
      ...common,
      '--prompt-worker', `127.0.0.1:${promptPort}`,
      '--token-worker', `127.0.0.1:${tokenPort}`,
    ]);
    await waitHealthy(routerPort);
    // No retries: a failure should show up as itself, at once.
    client = new OpenAI({ baseURL: `http://127.0.0.1:${routerPort}/v1`, apiKey: 'unused',
                          maxRetries: 0, timeout: 60_000 });
  });

  after(stopAll);

  const greedy = { model: MODEL, prompt: PROMPT, max_tokens: 60, temperature: 0 };
  const chat = {
    model: MODEL,
    messages: [{ role: 'user', content: 'Tell me a story about a cat.' }],
    max_tokens: 20,
    temperature: 0,
  };

  test('models.list() names the served model', async () => {
    const page = await client.models.list();
    assert.ok(page.data.some((m) => m.id === MODEL), JSON.stringify(page.data));
  });

  test('completions.create reproduces the llama2.c golden', async () => {
    const r = await client.completions.create(greedy);
    assert.equal(PROMPT + r.choices[0].text + '\n', golden);
    assert.equal(r.choices[0].finish_reason, 'length');
    assert.equal(r.usage.completion_tokens, 60);
  });

  test('completions.create stream: chunks add up to the golden', async () => {
    const stream = await client.completions.create({ ...greedy, stream: true });
    let text = '';
    let last;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? '';
      last = chunk;
    }
    assert.equal(PROMPT + text + '\n', golden);
    assert.equal(last.choices[0].finish_reason, 'length');
  });

  test('chat.completions.create returns an assistant message and usage', async () => {
    const r = await client.chat.completions.create(chat);
    const message = r.choices[0].message;
    assert.equal(message.role, 'assistant');
    assert.ok(typeof message.content === 'string' && message.content.length > 0);
    assert.ok(r.usage.prompt_tokens > 0 && r.usage.completion_tokens > 0, JSON.stringify(r.usage));
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  });

  test('chat.completions.create stream yields content deltas', async () => {
    const stream = await client.chat.completions.create({ ...chat, stream: true });
    let content = '';
    let finish = null;
    for await (const chunk of stream) {
      content += chunk.choices[0]?.delta?.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    assert.ok(content.length > 0);
    assert.ok(finish === 'length' || finish === 'stop', `finish_reason ${finish}`);
  });

  test('a bad request throws APIError 400 naming the parameter', async () => {
    await assert.rejects(client.completions.create({ ...greedy, temperature: -1 }), (e) => {
      assert.ok(e instanceof APIError, `not an APIError: ${e}`);
      assert.equal(e.status, 400);
      assert.match(e.message, /temperature/);
      return true;
    });
  });

  test('stream_options.include_usage ends with a usage chunk', async () => {
    const stream = await client.completions.create({
      ...greedy, stream: true, stream_options: { include_usage: true } });
    let text = '';
    let last;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? '';
      last = chunk;
    }
    assert.equal(PROMPT + text + '\n', golden);
    assert.deepEqual(last.choices, []);
    assert.equal(last.usage.completion_tokens, 60);
    assert.ok(last.usage.prompt_tokens > 0);
    assert.equal(last.usage.total_tokens, last.usage.prompt_tokens + 60);
  });
});
