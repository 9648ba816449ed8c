// The load harness's JavaScript anchor (jsanchor.go): the official CometD JavaScript client
// (cometd 9 with cometd-nodejs-client 2, pinned by test/interop/package-lock.json) doing what the
// daemon does against a Co-browse Server, in a node process of its own.
//
//   node jsanchor.mjs --interop <test/interop folder> --front <cluster URL> \
//                     --transport websocket|long-polling --mode join|hold [--concurrency 16]
//
// Every join is the four protocol steps: Get Session (REST, with an Origin header; the
// gcbSessionServer cookie it sets is then sent on every CometD request and on the websocket
// upgrade), the Bayeux handshake, the first /meta/connect (its reply awaited), and a remoteCall to
// /service/session/join as the Controller (role 3). Each join has a CometD instance of its own, as
// each of the daemon's sessions has a Bayeux client of its own. Transports: websocket keeps the
// client's websocket then long-polling (the daemon's default, genesys.transports), long-polling is
// long-polling alone; the transport the handshake settled on must be the one asked for.
//
// --mode join: the join-latency anchor. Says "ready", then for each session token read on stdin
// (one a line) joins, stops the session (remoteCall /service/session/stop), disconnects, and says
//   JOINED <join ms> <stop ms> <transport> <sessionHistoryId>
// or "FAILED <why>"; the times are taken here (performance.now): the join from just before Get
// Session to the join's reply, the stop over its remoteCall.
//
// --mode hold: the live anchor. Says "ready", reads session tokens on stdin until EOF, joins them
// all (--concurrency at a time, the daemon's default join slots), says "joined <n>", then
// "activated <n>" once the server has notified every session's activation (the agents joining),
// and holds them until SIGTERM. Any failure is a line "failed <why>" and exit status 1.
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import * as http from 'node:http';
import * as path from 'node:path';
import * as readline from 'node:readline';

function arg(name, dft) {
    const i = process.argv.indexOf(name);
    return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dft;
}

const interop = arg('--interop');
const front = arg('--front');
const transport = arg('--transport', 'websocket');
const mode = arg('--mode', 'join');
const concurrency = Number(arg('--concurrency', '16'));
if (!interop || !front || !['websocket', 'long-polling'].includes(transport) || !['join', 'hold'].includes(mode)) {
    console.error('jsanchor: usage: --interop DIR --front URL --transport websocket|long-polling --mode join|hold');
    process.exit(2);
}

// The packages live in test/interop/node_modules: resolve them from there.
const require = createRequire(path.join(path.resolve(interop), 'package.json'));
const load = (name) => import(pathToFileURL(require.resolve(name)).href);
const { adapt } = await load('cometd-nodejs-client');
const { CometD } = await load('cometd');

process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));

adapt();
// cometd-nodejs-client installs ws.WebSocket as the browser's WebSocket, and a browser sends its
// cookies on the upgrade. Sessions live on different nodes, so each CometD instance needs its own
// cookie: the instance is configured with a `protocol` that is only a key into cookies (the
// WebSocket transport passes it to the constructor), and the subclass sends the cookie and no
// subprotocol at all, as the client does by default.
const cookies = new Map();
const BaseWebSocket = global.window.WebSocket;
global.window.WebSocket = class extends BaseWebSocket {
    constructor(address, protocols) {
        if (typeof protocols === 'string' && cookies.has(protocols)) {
            super(address, undefined, { headers: { Cookie: cookies.get(protocols) } });
        } else {
            super(address, protocols);
        }
    }
};
let instances = 0;

// Get Session goes through a keep-alive agent of its own (the CometD requests use the adapter's).
const agent = new http.Agent({ keepAlive: true });
const stepTimeout = 30000;

function getSession(token) {
    return new Promise((resolve, reject) => {
        const u = new URL(front + '/rest/live/sessions/' + encodeURIComponent(token));
        const req = http.request(u, { agent, headers: { Origin: u.origin } }, (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (c) => { body += c; });
            res.on('end', () => {
                let info;
                try {
                    info = JSON.parse(body);
                } catch (e) {
                    return reject(new Error(`get session: HTTP ${res.statusCode}: ${e.message}`));
                }
                if (res.statusCode !== 200 || !info.sessionServerName) {
                    return reject(new Error(`get session: HTTP ${res.statusCode}: ${body.trim()}`));
                }
                let cookie = '';
                for (const sc of res.headers['set-cookie'] || []) {
                    const nv = sc.split(';')[0].trim();
                    if (nv.startsWith('gcbSessionServer=')) {
                        cookie = nv;
                    }
                }
                resolve({ info, cookie });
            });
            res.on('error', reject);
        });
        req.setTimeout(stepTimeout, () => req.destroy(new Error('get session: timed out')));
        req.on('error', reject);
        req.end();
    });
}

// Long-polling sessions are bound to the BAYEUX_BROWSER cookie the first handshake reply sets, and
// cometd-nodejs-client keeps the cookies the server sets in one jar per host for the whole process,
// as a browser does. Handshakes sent before that cookie is in the jar would each be issued one of
// their own and overwrite each other's, so the first long-polling handshake goes alone; every
// later one carries the cookie, which the server reuses (any number of sessions share a browser).
let browserGate = null;

// join does the four steps and resolves with the CometD instance, the Controller's user token and
// the session's history id. onMessage gets the server's /service/session/* notifications.
async function join(token, onActivated) {
    const { info, cookie } = await getSession(token);
    let node = front;
    let sticky = cookie;
    if (info.sessionServerUrl) {
        node = info.sessionServerUrl;
        sticky = '';
    }
    const key = `cookie-${++instances}`;
    const cometd = new CometD(key);
    cometd.unregisterTransport('callback-polling');
    if (transport === 'long-polling') {
        cometd.unregisterTransport('websocket');
    }
    const config = { url: node + '/cometd', logLevel: 'warn' };
    if (sticky) {
        cookies.set(key, sticky);
        config.protocol = key;
        config.requestHeaders = { Cookie: sticky };
    }
    cometd.configure(config);
    if (onActivated) {
        let seen = false;
        cometd.addListener('/service/session/activated', () => {
            if (!seen) {
                seen = true;
                onActivated();
            }
        });
    }
    const release = () => cookies.delete(key);
    let openGate = () => {};
    if (transport === 'long-polling') {
        if (browserGate) {
            await browserGate;
        } else {
            browserGate = new Promise((r) => { openGate = r; });
        }
    }
    return new Promise((resolve, reject) => {
        let settled = false;
        const fail = (why) => {
            openGate();
            if (settled) {
                return;
            }
            settled = true;
            clearTimeout(timer);
            try {
                cometd.disconnect();
            } catch (e) {
                // disconnected already
            }
            release();
            reject(new Error(why));
        };
        const timer = setTimeout(() => fail(`no join within ${stepTimeout} ms`), stepTimeout);
        let connected = false;
        const connectListener = cometd.addListener('/meta/connect', (m) => {
            if (!m.successful || connected) {
                return;
            }
            connected = true;
            cometd.removeListener(connectListener);
            const used = cometd.getTransport() ? cometd.getTransport().type : '';
            if (used !== transport) {
                return fail(`the client runs on ${used}, not ${transport}`);
            }
            cometd.remoteCall('/session/join', { sessionToken: token, role: 3 }, stepTimeout, (r) => {
                if (settled) {
                    return;
                }
                if (!r.successful || !r.data || !r.data.userToken || !r.data.sessionHistoryId) {
                    return fail(`join: ${JSON.stringify(r)}`);
                }
                settled = true;
                clearTimeout(timer);
                resolve({ cometd, userToken: r.data.userToken, historyId: r.data.sessionHistoryId, transport: used, release });
            });
        });
        cometd.handshake((reply) => {
            openGate();
            if (!reply.successful) {
                fail(`handshake: ${JSON.stringify(reply)}`);
            }
        });
    });
}

function stopAndLeave(j) {
    return new Promise((resolve, reject) => {
        const began = performance.now();
        j.cometd.remoteCall('/session/stop', { userToken: j.userToken }, stepTimeout, (r) => {
            const stopMs = performance.now() - began;
            const done = () => {
                j.release();
                if (r.successful) {
                    resolve(stopMs);
                } else {
                    reject(new Error(`stop: ${JSON.stringify(r)}`));
                }
            };
            try {
                j.cometd.disconnect(done);
            } catch (e) {
                done();
            }
        });
    });
}

const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });

if (mode === 'join') {
    console.log('ready');
    // One token at a time: the harness waits for each answer before it sends the next.
    for await (const line of lines) {
        const token = line.trim();
        if (!token) {
            continue;
        }
        try {
            const began = performance.now();
            const j = await join(token, null);
            const joinMs = performance.now() - began;
            const stopMs = await stopAndLeave(j);
            console.log(`JOINED ${joinMs.toFixed(3)} ${stopMs.toFixed(3)} ${j.transport} ${j.historyId}`);
        } catch (e) {
            console.log(`FAILED ${String(e.message || e).replace(/\n/g, '; ')}`);
        }
    }
    process.exit(0);
}

// hold
console.log('ready');
const tokens = [];
for await (const line of lines) {
    const token = line.trim();
    if (token) {
        tokens.push(token);
    }
}
const held = new Array(tokens.length);
let activated = 0;
let joinedAll = false;
const onActivated = () => {
    activated++;
    if (joinedAll && activated === tokens.length) {
        console.log(`activated ${activated}`);
    }
};
let next = 0;
async function worker() {
    while (next < tokens.length) {
        const i = next++;
        try {
            held[i] = await join(tokens[i], onActivated);
        } catch (e) {
            console.log(`failed ${tokens[i]}: ${String(e.message || e).replace(/\n/g, '; ')}`);
            process.exit(1);
        }
    }
}
await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker));
joinedAll = true;
console.log(`joined ${held.length}`);
if (activated === tokens.length) {
    console.log(`activated ${activated}`);
}
// Held until SIGTERM: the connect loops keep the process alive.
setInterval(() => {}, 1 << 30);
