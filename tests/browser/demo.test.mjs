// End-to-end test of the demo chat page in a real browser (Debian's chromium through
// playwright-core; no browser is downloaded). Needs a running gateway in demo mode with
// realtime.mode = both: IMGATE_URL (the page's URL, e.g. http://127.0.0.1:8080/), and tokens
// in IMGATE_TOKEN_ALICE / IMGATE_TOKEN_BOB unless the gateway answers GET demo/token?user=ID.
// `bash tests/browser/run.sh` provides all of that.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const BASE = (process.env.IMGATE_URL || 'http://127.0.0.1:8080/').replace(/\/?$/, '/');
const STEP = 15000;
const stamp = Date.now().toString(36);

// A 120×72 PNG of coloured blocks.
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAHgAAABICAIAAACyfKYoAAAArElEQVR42u3SMRGAMAAEweigoUmfEi+YiISYipHooEECLQa+ys6cgp0rZ39CHeMK9c471KotVAENGjRo0KBBgwYNGjRo0KBBgwYNGjRo0KBBgwYNGjRo0KBBgwYNGjRo0KBBgwYNGjRo0KBBg94YGse/3HagQYMGDRo0aNCgQYMGDRo0aNCgQYMGDRo0aNCgQYMGDRo0aNCgQYMGDRo0aNCgQYMGDRo0aNAbQ39f8rl0gwpXCQAAAABJRU5ErkJggg==',
  'base64',
);

let browser;
const errors = [];

async function tokenFor(user) {
  const fromEnv = process.env[`IMGATE_TOKEN_${user.toUpperCase()}`];
  if (fromEnv) return fromEnv;
  const res = await fetch(new URL(`demo/token?user=${user}`, BASE));
  assert.ok(res.ok, `no IMGATE_TOKEN_${user.toUpperCase()} and GET demo/token answered ${res.status}`);
  const type = res.headers.get('content-type') || '';
  return type.includes('json') ? (await res.json()).token : (await res.text()).trim();
}

async function openAs(user, viewport) {
  const context = await browser.newContext({ viewport, acceptDownloads: true });
  const page = await context.newPage();
  page.on('pageerror', (err) => errors.push(`${user}: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !/Failed to load resource/.test(msg.text())) {
      errors.push(`${user} console: ${msg.text()}`);
    }
  });
  await page.goto(BASE);
  await page.fill('#signin-user', user);
  await page.fill('#signin-token', await tokenFor(user));
  await page.selectOption('#signin-mode', 'backend');
  await page.click('#signin-form button[type=submit]');
  await page.waitForSelector('#chat-view:not([hidden])', { timeout: STEP });
  await waitText(page, '#status', 'live (gateway hub)');
  return page;
}

/** Waits until the first element matching `selector` is shown and contains `text`. */
async function waitText(page, selector, text) {
  try {
    await page.waitForFunction(
      ([sel, want]) => {
        const e = document.querySelector(sel);
        return e && e.offsetParent !== null && e.textContent.includes(want);
      },
      [selector, text],
      { timeout: STEP },
    );
  } catch (err) {
    const got = await page.locator(selector).first().textContent().catch(() => '(none)');
    throw new Error(`${selector} never showed "${text}" (it shows "${got}"): ${err.message}`);
  }
}

async function messageTexts(page) {
  return page.locator('#messages .text').allTextContents();
}

async function waitMessage(page, text) {
  await waitText(page, '#messages', text);
}

async function currentRoom(page) {
  await page.waitForSelector('.room-item[aria-current="true"]', { timeout: STEP });
  return page.locator('.room-item[aria-current="true"]').getAttribute('data-id');
}

function badge(room) {
  return `.room-item[data-id="${room}"] .badge`;
}

async function send(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
  await waitMessage(page, text);
  assert.equal(await page.inputValue('#text'), '', 'Enter sends and clears the box');
}

/** The image preview of `name` was fetched with the Bearer header and decoded. */
async function waitPreview(page, name) {
  await page.waitForFunction(
    (n) => [...document.querySelectorAll('#messages img.preview')]
      .some((img) => img.alt === n && img.src.startsWith('blob:') && img.complete && img.naturalWidth > 0),
    name,
    { timeout: STEP },
  );
}

async function switchMode(page, mode, status) {
  await page.selectOption('#mode', mode);
  await waitText(page, '#status', status);
}

async function showRooms(page) {
  if (await page.locator('#back').isVisible()) await page.click('#back');
}

let alice;
let bob;

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.IMGATE_CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  alice = await openAs('alice', { width: 1100, height: 720 });
  bob = await openAs('bob', { width: 390, height: 800 }); // phone width
});

let restarted = null;

after(async () => {
  if (browser) await browser.close();
  if (restarted) {
    restarted.kill('SIGTERM');
    await new Promise((r) => restarted.once('exit', r));
  }
});

test('the page and its assets are served by the gateway', async () => {
  for (const path of ['', 'assets/app.js', 'assets/style.css', 'assets/signalr.min.js']) {
    const res = await fetch(new URL(path, BASE));
    assert.equal(res.status, 200, path);
  }
  assert.equal(await alice.evaluate(() => typeof window.signalR.HubConnectionBuilder), 'function');
});

test('sign in with a user id alone when the gateway hands out demo tokens', async (t) => {
  const res = await fetch(new URL('demo/token?user=carol', BASE));
  if (!res.ok) {
    t.skip(`GET demo/token answers ${res.status}: the page asks for a pasted token instead`);
    return;
  }
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(BASE);
  await page.fill('#signin-user', 'carol');
  await page.click('#signin-form button[type=submit]');
  await waitText(page, '#me', 'carol');
  await waitText(page, '#status', 'live (gateway hub)');
  await context.close();
});

test('without a token or a demo endpoint the page says what to do', async (t) => {
  const res = await fetch(new URL('demo/token?user=carol', BASE));
  if (res.ok) {
    t.skip('the gateway hands out demo tokens');
    return;
  }
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(BASE);
  await page.fill('#signin-user', 'carol');
  await page.click('#signin-form button[type=submit]');
  await waitText(page, '#banner-text', 'paste a token');
  await context.close();
});

// Demo mode's bundled provider starts with #general, where alice greets everyone; a real
// provider (the Matrix variant's fresh Synapse) is never seeded, so there the list is empty.
const WELCOME = 'Welcome to the imgate demo!';

test('first view: #general with its welcome message, or nothing in front of a real provider', async () => {
  if (process.env.IMGATE_PROVIDER === 'matrix') {
    await waitText(alice, '#rooms-empty', 'No rooms yet');
    await waitText(bob, '#rooms-empty', 'No rooms yet');
    return;
  }
  const general = alice.locator('.room-item', { hasText: '#general' });
  await general.waitFor({ timeout: STEP });
  const room = await general.getAttribute('data-id');
  assert.equal(await alice.locator('.room-item').count(), 1, 'alice starts with #general alone');
  await waitText(alice, `.room-item[data-id="${room}"] .room-last`, `you: ${WELCOME}`);
  assert.equal(await alice.locator(badge(room)).isVisible(), false, 'alice wrote it');
  assert.equal(await alice.locator('#rooms-empty').isVisible(), false);

  // bob is a member with the greeting unread; opening the room shows it and reads it.
  await waitText(bob, `.room-item[data-id="${room}"] .room-last`, WELCOME);
  await waitText(bob, badge(room), '1');
  await waitText(bob, '#unread-total', '1');
  await bob.click(`.room-item[data-id="${room}"]`);
  await waitText(bob, '#room-title', '#general');
  await waitMessage(bob, WELCOME);
  // The gateway has it read too, before the next test counts bob's unread messages.
  const token = await tokenFor('bob');
  const deadline = Date.now() + STEP;
  for (;;) {
    const res = await fetch(new URL('api/v1/unread', BASE), { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(res.status, 200);
    if ((await res.json()).total === 0) break;
    assert.ok(Date.now() < deadline, 'opening #general marks it read');
    await new Promise((r) => setTimeout(r, 200));
  }
  await showRooms(bob);
  assert.equal(await bob.locator('#unread-total').isVisible(), false, 'nothing unread once read');
});

test('backend mode: unread badge, history, live reply, typing, edit, delete, file', async () => {
  // alice starts a direct room with bob and writes.
  await alice.fill('#dm-user', 'bob');
  await alice.press('#dm-user', 'Enter');
  const room = await currentRoom(alice);
  const hello = `hello bob ${stamp}`;
  await send(alice, hello);

  // bob's badge rises without a reload; the list shows the last message.
  await waitText(bob, badge(room), '1');
  await waitText(bob, `.room-item[data-id="${room}"] .room-last`, hello);
  await waitText(bob, '#unread-total', '1');

  // Opening the room shows the message and clears the badge.
  await bob.click(`.room-item[data-id="${room}"]`);
  await waitMessage(bob, hello);
  assert.ok(await bob.locator('#room').isVisible(), 'phone width shows the room alone');

  // bob types: alice sees the indicator; bob's reply reaches alice's open room.
  await bob.fill('#text', 'typing…');
  await waitText(alice, '#typing', 'bob is typing');
  const reply = `hi alice ${stamp}`;
  await send(bob, reply);
  await waitMessage(alice, reply);
  await alice.waitForFunction(() => document.querySelector('#typing').textContent === '', null, { timeout: STEP });

  // bob uploads an image: both see it, fetched through the gateway with the Bearer header.
  await bob.setInputFiles('#file', { name: 'dot.png', mimeType: 'image/png', buffer: PNG });
  await waitText(bob, '#messages', 'dot.png');
  await waitText(alice, '#messages', 'dot.png');
  await waitPreview(alice, 'dot.png');
  await waitPreview(bob, 'dot.png');

  // alice edits her own message; bob sees the edit.
  const mine = alice.locator('#messages li.mine', { hasText: hello });
  await mine.locator('button.edit').click();
  const edited = `hello bob (edited) ${stamp}`;
  await alice.fill('#messages li.editing textarea', edited);
  await alice.press('#messages li.editing textarea', 'Enter');
  await waitMessage(alice, edited);
  await waitMessage(bob, edited);
  if (process.env.IMGATE_SCREENSHOT) {
    await bob.fill('#text', 'sounds good');
    await waitText(alice, '#typing', 'bob is typing');
    await alice.screenshot({ path: process.env.IMGATE_SCREENSHOT });
    await bob.fill('#text', '');
  }

  // ... and deletes it; it disappears for bob.
  await alice.locator('#messages li.mine', { hasText: edited }).locator('button.delete').click();
  await alice.locator('#messages li.mine', { hasText: edited }).locator('button.delete').click();
  await bob.waitForFunction((t) => !document.querySelector('#messages').textContent.includes(t), edited, { timeout: STEP });
  assert.ok(!(await messageTexts(alice)).includes(edited));

  // alice has the room open: nothing unread.
  assert.equal(await alice.locator(badge(room)).isVisible(), false);
});

test('load older pages back through history with before=', async () => {
  const room = await currentRoom(alice);
  // 35 messages over REST (the page shows 30 at first).
  const token = await tokenFor('alice');
  for (let i = 0; i < 35; i += 1) {
    const res = await fetch(new URL(`api/v1/rooms/${room}/messages`, BASE), {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ text: `bulk ${i} ${stamp}` }),
    });
    assert.equal(res.status, 201);
  }
  await alice.reload();
  await waitText(alice, '#status', 'live');
  await alice.click(`.room-item[data-id="${room}"]`);
  await waitMessage(alice, `bulk 34 ${stamp}`);
  assert.ok(!(await messageTexts(alice)).includes(`bulk 0 ${stamp}`));
  await alice.click('#load-older');
  await waitMessage(alice, `bulk 0 ${stamp}`);
  await waitMessage(alice, `hi alice ${stamp}`);
  const texts = await messageTexts(alice);
  assert.ok(texts.indexOf(`bulk 0 ${stamp}`) < texts.indexOf(`bulk 34 ${stamp}`), 'oldest first');
});

test('host pushes show as notices to that user only', async () => {
  const push = (user, args) => fetch(new URL(`api/v1/hub/users/${user}`, BASE), {
    method: 'POST',
    headers: { 'X-Api-Key': process.env.IMGATE_API_KEY || 'imgate-demo-api-key', 'Content-Type': 'application/json' },
    body: JSON.stringify({ target: 'notify', arguments: args }),
  });
  const text = `your order shipped ${stamp}`;
  assert.equal((await push('bob', [text])).status, 202);
  assert.equal((await push('alice', [{ orderId: 42 }])).status, 202);
  await waitText(bob, '#notices', text);
  await waitText(alice, '#notices', '"orderId":42');
  assert.ok(!(await alice.textContent('#notices')).includes(text), 'a push to bob reaches bob only');
  await bob.locator('#notices li', { hasText: text }).locator('button').click();
  assert.ok(!(await bob.textContent('#notices')).includes(text), 'dismissed');
});

test('gateway errors show the API error envelope', async () => {
  await alice.fill('#dm-user', 'no-such-user-' + stamp);
  await alice.press('#dm-user', 'Enter');
  await alice.waitForSelector('#banner:not([hidden])', { timeout: STEP });
  const text = await alice.textContent('#banner-text');
  assert.ok(text && text.length > 5, `banner says something (${text})`);
  await alice.click('#banner-close');
  await alice.fill('#dm-user', '');
});

// The page's frontend mode speaks Rocket.Chat's realtime API (DDP); against Matrix only the
// gateway's hub carries live updates.
test('frontend mode: the provider realtime API directly, REST through the gateway', {
  skip: process.env.IMGATE_PROVIDER === 'matrix' ? 'the page has no Matrix /sync client for frontend mode' : false,
}, async () => {
  await switchMode(alice, 'frontend', 'live (provider direct)');
  await switchMode(bob, 'frontend', 'live (provider direct)');

  // alice creates a private group with bob.
  await alice.click('#new-room summary');
  const name = `fe-${stamp}`;
  await alice.fill('#room-name', name);
  await alice.selectOption('#room-kind', 'group');
  await alice.fill('#room-members', 'bob');
  await alice.click('#room-form button[type=submit]');
  await waitText(alice, '#room-title', name);
  const room = await currentRoom(alice);
  const hello = `frontend hello ${stamp}`;
  await send(alice, hello);

  await showRooms(bob);
  await waitText(bob, badge(room), '1');
  await waitText(bob, `.room-item[data-id="${room}"] .room-last`, hello);
  await bob.click(`.room-item[data-id="${room}"]`);
  await waitMessage(bob, hello);

  await bob.fill('#text', 'typing over the provider…');
  await waitText(alice, '#typing', 'bob is typing');
  const reply = `frontend reply ${stamp}`;
  await send(bob, reply);
  await waitMessage(alice, reply);

  // A text file from bob appears for both; alice downloads it (a Blob fetched with the header).
  await bob.setInputFiles('#file', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from(`notes ${stamp}`) });
  await waitText(bob, '#messages', 'notes.txt');
  await waitText(alice, '#messages', 'notes.txt');
  const [download] = await Promise.all([
    alice.waitForEvent('download', { timeout: STEP }),
    alice.locator('#messages li', { hasText: 'notes.txt' }).locator('button.download').click(),
  ]);
  assert.equal(download.suggestedFilename(), 'notes.txt');
  assert.equal(await readFile(await download.path(), 'utf8'), `notes ${stamp}`);

  // Deletes arrive over the provider's stream too.
  await alice.locator('#messages li.mine', { hasText: hello }).locator('button.delete').click();
  await alice.locator('#messages li.mine', { hasText: hello }).locator('button.delete').click();
  await bob.waitForFunction((t) => !document.querySelector('#messages').textContent.includes(t), hello, { timeout: STEP });
});

test('frontend mode with a provider the page has no client for: said so, back to backend', {
  skip: process.env.IMGATE_PROVIDER === 'matrix' ? false : 'the page has a client for this provider',
}, async () => {
  await alice.selectOption('#mode', 'frontend');
  await waitText(alice, '#banner-text', 'Frontend mode is not available here');
  await waitText(alice, '#status', 'live (gateway hub)');
  assert.equal(await alice.inputValue('#mode'), 'backend');
  await alice.click('#banner-close');
  const text = `still live over the hub ${stamp}`;
  await send(alice, text);
  await waitMessage(bob, text);
});

test('back to backend mode', async () => {
  await switchMode(alice, 'backend', 'live (gateway hub)');
  await switchMode(bob, 'backend', 'live (gateway hub)');
  const room = await currentRoom(alice);
  const text = `back on the hub ${stamp}`;
  await send(alice, text);
  await waitMessage(bob, text);
  assert.ok(room);
});

test('no script errors in either page', () => {
  assert.deepEqual(errors, []);
});

// Last: stops the gateway run.sh started and starts another on the same port.
const restart = process.env.IMGATE_GATEWAY_BIN && process.env.IMGATE_GATEWAY_PID;
test('gateway down: reconnecting state, a clear message, then live again', {
  skip: restart ? false : 'needs IMGATE_GATEWAY_BIN and IMGATE_GATEWAY_PID (run.sh sets them)',
}, async () => {
  process.kill(Number(process.env.IMGATE_GATEWAY_PID), 'SIGTERM');
  await waitText(alice, '#status', 'reconnecting');
  await alice.fill('#text', 'sent while the gateway is down');
  await alice.press('#text', 'Enter');
  await waitText(alice, '#banner-text', 'not reachable');
  assert.equal(await alice.inputValue('#text'), 'sent while the gateway is down', 'the text is kept');

  // Wait for the port to be free, then start a fresh gateway (an embedded provider is new).
  await new Promise((r) => setTimeout(r, 1000));
  restarted = spawn(process.env.IMGATE_GATEWAY_BIN, [], {
    cwd: fileURLToPath(new URL('../..', import.meta.url)),
    env: process.env,
    stdio: 'ignore',
  });
  const back = { timeout: 60000 };
  await alice.waitForFunction(() => document.querySelector('#status').textContent === 'live (gateway hub)', null, back);
  await bob.waitForFunction(() => document.querySelector('#status').textContent === 'live (gateway hub)', null, back);
  assert.equal(await alice.locator('#banner').isVisible(), false, 'the network message goes away');

  // Everything works again: a new group, live to bob (new also where the provider outlived the
  // gateway and the direct room with bob is still there).
  await alice.click('#new-room summary');
  const name = `after-${stamp}`;
  await alice.fill('#room-name', name);
  await alice.selectOption('#room-kind', 'group');
  await alice.fill('#room-members', 'bob');
  await alice.click('#room-form button[type=submit]');
  await waitText(alice, '#room-title', name);
  const room = await currentRoom(alice);
  await send(alice, `after the restart ${stamp}`);
  await showRooms(bob);
  await waitText(bob, badge(room), '1');
});
