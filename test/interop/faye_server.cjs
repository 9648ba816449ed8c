// A faye 1.4.3 peer for the Bayeux client interop tests (bayeux_client_test.go).
//
//   node faye_server.cjs [--timeout seconds]
//
// Prints "LISTENING <url>" once ready, then one line per notable server event:
//   HANDSHAKE <clientId>
//   CONNECT <clientId> <connectionType>   the first /meta/connect of a client per connection type
//   SUBSCRIBE <clientId> <channel>
//   UPGRADE origin=<Origin header> cookie=<cookie names>   a websocket upgrade on the Bayeux path
// Admin endpoints, beside the Bayeux endpoint /faye:
//   POST /admin/expire?clientId=<id>  destroys the client in the engine (as a faye timeout does)
// Exits on SIGTERM.
'use strict';

const http = require('http');
const faye = require('faye');

function arg(name, dft) {
    const i = process.argv.indexOf(name);
    return i >= 0 ? Number(process.argv[i + 1]) : dft;
}

const bayeux = new faye.NodeAdapter({ mount: '/faye', timeout: arg('--timeout', 1) });

const seen = new Set();
bayeux.addExtension({
    incoming(message, request, callback) {
        if (message.channel === '/meta/connect') {
            const key = `${message.clientId} ${message.connectionType}`;
            if (!seen.has(key)) {
                seen.add(key);
                console.log(`CONNECT ${key}`);
            }
        } else if (message.channel === '/meta/subscribe') {
            console.log(`SUBSCRIBE ${message.clientId} ${message.subscription}`);
        }
        callback(message);
    },
    outgoing(message, request, callback) {
        if (message.channel === '/meta/handshake' && message.successful) {
            console.log(`HANDSHAKE ${message.clientId}`);
        }
        callback(message);
    },
});

const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    if (url.pathname === '/admin/expire') {
        const clientId = url.searchParams.get('clientId');
        const engine = bayeux._server._engine;
        engine.clientExists(clientId, (exists) => {
            if (!exists) {
                res.statusCode = 404;
                res.end('unknown client');
                return;
            }
            engine.destroyClient(clientId);
            res.end('expired');
        });
        return;
    }
    res.statusCode = 404;
    res.end('not found');
});

bayeux.attach(server);

// Listens beside faye's own upgrade handler: evidence of what the upgrade carried.
server.on('upgrade', (req) => {
    const cookies = (req.headers.cookie || '').split(';').map((c) => c.split('=')[0].trim()).filter(Boolean);
    console.log(`UPGRADE origin=${req.headers.origin || ''} cookie=${cookies.join(',')}`);
});

server.listen(0, '127.0.0.1', () => {
    console.log(`LISTENING http://127.0.0.1:${server.address().port}/faye`);
});

process.on('SIGTERM', () => {
    bayeux.close();
    server.close();
    server.closeAllConnections();
    process.exit(0);
});
