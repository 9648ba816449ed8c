// A cometd-nodejs-server 1.2.1 peer for the Bayeux client interop tests (bayeux_client_test.go).
//
//   node cometd_server.mjs [--timeout ms] [--max-interval ms]
//
// Prints "LISTENING <url>" once ready, then one line per notable server event:
//   HANDSHAKE <clientId>         a session was created
//   SUBSCRIBE <clientId> <chan>  a subscription was made
//   REMOVED <clientId> <timeout> a session went away (timeout: expired, not disconnected)
//   UPGRADE <status>             a websocket upgrade was attempted (this server has no websocket)
// Admin endpoints, beside the Bayeux endpoint /cometd:
//   POST /admin/expire?clientId=<id>  expires the session as the server's sweeper does
// Services: /service/echo answers in the publish reply's data (remote-call style);
// /service/deliver answers with a separate message carrying the call's id.
// Exits on SIGTERM.
import http from 'node:http';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { createCometDServer } = require('cometd-nodejs-server');

function arg(name, dft) {
    const i = process.argv.indexOf(name);
    return i >= 0 ? Number(process.argv[i + 1]) : dft;
}

const cometd = createCometDServer({
    timeout: arg('--timeout', 1000),
    maxInterval: arg('--max-interval', 10000),
    sweepPeriod: 200,
});

cometd.addListener('sessionAdded', (session) => {
    console.log(`HANDSHAKE ${session.id}`);
    session.addListener('removed', (s, timeout) => console.log(`REMOVED ${s.id} ${timeout}`));
});

cometd.createServerChannel('/service/echo').addListener('message', (session, channel, message, callback) => {
    message.reply.data = { echo: message.data };
    callback();
});

cometd.createServerChannel('/service/deliver').addListener('message', (session, channel, message, callback) => {
    // A result sent on its own, as a server-side deliver with the request's id.
    session._deliver(session, { channel: '/service/deliver', id: message.id, data: { delivered: message.data } }, () => {});
    callback();
});

const subscribed = new Set();
cometd.addExtension({
    incoming(server, session, message, callback) {
        if (message.channel === '/meta/subscribe' && session) {
            const key = `${session.id} ${message.subscription}`;
            if (!subscribed.has(key)) {
                subscribed.add(key);
                console.log(`SUBSCRIBE ${key}`);
            }
        }
        callback(undefined, true);
    },
});

const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    if (url.pathname === '/admin/expire') {
        const session = cometd.getServerSession(url.searchParams.get('clientId'));
        if (!session) {
            res.statusCode = 404;
            res.end('unknown session');
            return;
        }
        // What the sweeper does when maxInterval passes: answer a held connect, forget the session.
        if (session._scheduler) {
            session._scheduler.cancel();
        }
        cometd._removeServerSession(session, true);
        res.end('expired');
        return;
    }
    if (req.headers.upgrade) {
        res.on('finish', () => console.log(`UPGRADE ${res.statusCode}`));
    }
    cometd.handle(req, res);
});

server.listen(0, '127.0.0.1', () => {
    console.log(`LISTENING http://127.0.0.1:${server.address().port}/cometd`);
});

process.on('SIGTERM', () => {
    cometd.close();
    server.close();
    server.closeAllConnections();
    process.exit(0);
});
