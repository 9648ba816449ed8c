// The official CometD JavaScript client (cometd 9 + cometd-nodejs-client 2) playing a Genesys
// Controller against gcbtest (gcbtest_jsclient_test.go).
//
//   node jsclient.mjs --url <CometD URL> --transport websocket|long-polling --token <9 digits>
//                     [--cookie <name=value>] [--name <agent id>]
//
// --cookie is sent on every long-polling request (through the client's requestHeaders) and on
// the websocket upgrade (through the headers option of the `ws` WebSocket): the load
// balancer's stickiness cookie, gcbSessionServer=<node>.
//
// Prints one line per step, for the Go test to expect:
//   HANDSHAKE {"transport":...,"clientId":...}   the handshake succeeded, with that transport
//   JOINED {...}                                 the remoteCall to /service/session/join answered: its data
//   JOINFAIL {...}                               ... or failed: the whole reply
//   CONNECT <n>                                  the n-th successful /meta/connect reply after JOINED
//   NOTIFY <channel> {...}                       a /service/session/* notification: its data
//   STOPPED {...}                                after activated, the remoteCall to /service/session/stop answered
//   DISCONNECTED {"transport":...}               after deactivated, /meta/disconnect done; then it exits 0
//   UNSUCCESSFUL {...}                           any unsuccessful reply (for the log)
import { adapt } from 'cometd-nodejs-client';
import { CometD } from 'cometd';
import * as ws from 'ws';

function arg(name, dft) {
    const i = process.argv.indexOf(name);
    return i >= 0 ? process.argv[i + 1] : dft;
}

const url = arg('--url');
const transport = arg('--transport', 'websocket');
const token = arg('--token');
const cookie = arg('--cookie', '');
const name = arg('--name', '');

function out(tag, value) {
    console.log(`${tag} ${JSON.stringify(value)}`);
}

process.on('SIGTERM', () => process.exit(0));
setTimeout(() => {
    console.error('jsclient: watchdog: giving up after 60 s');
    process.exit(2);
}, 60000).unref();

adapt();
if (cookie) {
    // cometd-nodejs-client installs ws.WebSocket as the browser WebSocket; a browser sends its
    // cookies on the upgrade, so this one does too.
    global.window.WebSocket = class extends ws.WebSocket {
        constructor(address, protocols) {
            super(address, protocols, { headers: { Cookie: cookie } });
        }
    };
}

const cometd = new CometD();
if (transport === 'long-polling') {
    cometd.unregisterTransport('websocket');
    cometd.unregisterTransport('callback-polling');
} else if (transport !== 'websocket') {
    throw new Error(`unknown transport ${transport}`);
}
cometd.configure({
    url,
    logLevel: 'warn',
    // Short, so that a reply the transport failed to match (a websocket message timeout, which
    // closes the connection) shows within a few connect cycles.
    maxNetworkDelay: 1000,
    requestHeaders: cookie ? { Cookie: cookie } : {},
});

let userToken;
let usedTransport;
let connects = -1; // counting starts at JOINED

cometd.addListener('/meta/connect', (m) => {
    if (m.successful && connects >= 0) {
        connects++;
        console.log(`CONNECT ${connects}`);
    }
});

cometd.addListener('/meta/unsuccessful', (m) => out('UNSUCCESSFUL', m));

// Notifications: joined and activated with plain listeners (the server delivers them without
// a subscription), deactivated through a subscription (a /meta/subscribe the server accepts).
for (const channel of ['/service/session/joined', '/service/session/activated']) {
    cometd.addListener(channel, (m) => {
        out(`NOTIFY ${channel}`, m.data);
        if (channel === '/service/session/activated') {
            cometd.remoteCall('/session/stop', { userToken }, 5000, (reply) => {
                out(reply.successful ? 'STOPPED' : 'STOPFAIL', reply.successful ? reply.data : reply);
            });
        }
    });
}

cometd.handshake((reply) => {
    if (!reply.successful) {
        out('HANDSHAKEFAIL', reply);
        process.exit(1);
    }
    usedTransport = cometd.getTransport().type;
    out('HANDSHAKE', { transport: usedTransport, clientId: reply.clientId });
    cometd.subscribe('/service/session/deactivated', (m) => {
        out('NOTIFY /service/session/deactivated', m.data);
        const now = cometd.getTransport() ? cometd.getTransport().type : usedTransport;
        cometd.disconnect((r) => {
            out('DISCONNECTED', { transport: now, successful: r.successful });
            process.exit(0);
        });
    });
    const join = { sessionToken: token, role: 3 };
    if (name) {
        join.name = name;
    }
    cometd.remoteCall('/session/join', join, 5000, (r) => {
        if (r.successful) {
            userToken = r.data.userToken;
            connects = 0;
            out('JOINED', r.data);
        } else {
            out('JOINFAIL', r);
        }
    });
});
