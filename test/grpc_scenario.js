// Drives a sessions service over gRPC with the published Node SDK (client-sessions-node):
// SessionsGrpcClientV1 (sessions_v1.proto) and SessionsCommandableGrpcClientV1 (commandable.proto).
// Usage: node scenario.js <client package dir> <port>. Prints one JSON report on stdout.
const path = require('path');
const clientDir = process.argv[2];
const port = Number(process.argv[3]);
const sdk = require(clientDir);
const { SessionsGrpcClientV1 } = require(path.join(clientDir, 'obj', 'src', 'version1', 'SessionsGrpcClientV1'));
const messages = require(path.join(clientDir, 'src', 'protos', 'sessions_v1_pb'));
const { ConfigParams, FilterParams, PagingParams } = require('pip-services3-commons-nodex');

const config = ConfigParams.fromTuples(
    'connection.protocol', 'http', 'connection.host', '127.0.0.1', 'connection.port', port);

function plain(s) {
    if (s == null) return null;
    const iso = (d) => (d instanceof Date ? d.toISOString() : d == null ? null : String(d));
    return {
        id: s.id, user_id: s.user_id, user_name: s.user_name, address: s.address, client: s.client,
        active: s.active, open_time: iso(s.open_time), request_time: iso(s.request_time),
        close_time: iso(s.close_time), user: s.user === undefined ? '<absent>' : s.user,
        data: s.data === undefined ? '<absent>' : s.data,
    };
}

async function caught(promise) {
    try {
        const value = await promise;
        return { value: value === undefined ? '<undefined>' : value };
    } catch (e) {
        return { error: { category: e.category || null, code: e.code || null, status: e.status || null,
            message: String(e.message || e), grpc_code: typeof e.code === 'number' ? e.code : null } };
    }
}

async function scenario(client) {
    const r = {};
    const cid = 'cid-1';
    const s1 = await client.openSession(cid, 'u1', 'Ann', '10.0.0.1', 'web', { name: 'Ann' }, { cart: [1] });
    r.opened = plain(s1);
    const s2 = await client.openSession(cid, 'u1', null, null, null, null, null);
    r.opened_bare = plain(s2);
    const s3 = await client.openSession(cid, 'u2', 'Cy', null, null, null, null);
    r.got = plain(await client.getSessionById(cid, s1.id));
    const page = await client.getSessions(cid, FilterParams.fromTuples('user_id', 'u1'), new PagingParams(0, 1, true));
    r.page_u1 = { total: page.total, count: page.data.length, user_ids: page.data.map((s) => s.user_id) };
    const all = await client.getSessions(cid, FilterParams.fromTuples('active', 'true'), new PagingParams(0, 10, true));
    r.page_active = { total: all.total, count: all.data.length };
    const second = await client.getSessions(cid, FilterParams.fromTuples('user_id', 'u1'), new PagingParams(1, 1, false));
    r.page_u1_skip = { count: second.data.length };
    const none = await client.getSessions(cid, FilterParams.fromTuples('user_id', 'nobody'), null);
    r.page_nobody = { total: none.total, count: none.data.length };
    r.stored = plain(await client.storeSessionData(cid, s1.id, { step: 2 }));
    r.updated = plain(await client.updateSessionUser(cid, s1.id, { name: 'Bob' }));
    r.closed = plain(await client.closeSession(cid, s1.id));
    r.got_closed = plain(await client.getSessionById(cid, s1.id));
    r.close_expired = await caught(client.closeExpiredSessions(cid));
    r.deleted = plain(await client.deleteSessionById(cid, s3.id));
    r.got_deleted = plain(await client.getSessionById(cid, s3.id));
    const unknown = 'f'.repeat(32);
    r.unknown = {
        get: plain(await client.getSessionById(cid, unknown)),
        store: plain(await client.storeSessionData(cid, unknown, { a: 1 })),
        update: plain(await client.updateSessionUser(cid, unknown, { a: 1 })),
        close: plain(await client.closeSession(cid, unknown)),
        delete: plain(await client.deleteSessionById(cid, unknown)),
    };
    r.s2_id = s2.id;
    return r;
}

// The typed SDK never surfaces an ErrorDescription (it tests `response.error` on a protobuf
// message), so invalid input is sent through its protected `call` and the reply is read as is.
async function typedInvalid(client) {
    const out = {};
    const reply = async (method, request) => {
        try {
            const response = await client.call(method, null, request);
            const e = response.getError();
            const s = response.getSession ? response.getSession() : null;
            return {
                error: e ? { category: e.getCategory(), code: e.getCode(), status: e.getStatus(),
                    correlation_id: e.getCorrelationId() } : null,
                session_user_id: s ? s.getUserId() : null,
            };
        } catch (err) {
            return { grpc_error: { code: err.code, details: String(err.details || err.message) } };
        }
    };
    let req = new messages.SessionOpenRequest();
    req.setCorrelationId('cid-bad');
    out.open_empty_user = await reply('open_session', req);
    req = new messages.SessionStoreDataRequest();
    req.setSessionId('f'.repeat(32));
    req.setData('{not json');
    out.store_bad_json = await reply('store_session_data', req);
    req = new messages.SessionOpenRequest();
    req.setUserId('u9');
    req.setUser('[1,');
    out.open_bad_user_json = await reply('open_session', req);
    return out;
}

async function commandableInvalid(client) {
    return {
        open_null_user: await caught(client.openSession('cid-bad', null, null, null, null, null, null)),
        get_number_id: await caught(client.callCommand('get_session_by_id', 'cid-bad', { session_id: 123 })),
        unknown_command: await caught(client.callCommand('no_such_command', 'cid-bad', {})),
        store_null_data_missing_id: await caught(client.callCommand('store_session_data', 'cid-bad', { data: 1 })),
        negative_take: await caught(client.callCommand('get_sessions', 'cid-bad', { paging: { take: -1 } })),
    };
}

(async () => {
    const report = {};
    const typed = new SessionsGrpcClientV1();
    typed.configure(config);
    await typed.open(null);
    report.typed = await scenario(typed);
    report.typed_invalid = await typedInvalid(typed);
    await typed.close(null);

    const commandable = new sdk.SessionsCommandableGrpcClientV1();
    commandable.configure(config);
    await commandable.open(null);
    report.commandable = await scenario(commandable);
    report.commandable_invalid = await commandableInvalid(commandable);
    await commandable.close(null);
    process.stdout.write(JSON.stringify(report));
    process.exit(0);
})().catch((e) => {
    process.stderr.write('scenario failed: ' + (e && e.stack ? e.stack : String(e)) + '\n');
    process.exit(1);
});
