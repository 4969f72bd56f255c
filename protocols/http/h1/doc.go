// Package h1 reads HTTP/1.x messages strictly and writes them back out in
// one canonical form (RFC 9112, with the field syntax of RFC 9110).
//
// It is the only reader of HTTP/1 bytes in gatehouse, for requests from
// clients and responses from targets alike. gatehouse checks a request
// (Host, allowed URLs) and forwards it to a target that may be far more
// tolerant than it is; any byte sequence that two parsers could read two
// ways (a request boundary, a Host, a path) is how a check is walked
// around. So this package accepts only messages with exactly one reading
// and refuses the rest, including everything RFC 9112 says a recipient
// MUST reject and the forms it merely permits rejecting (bare LF, obs-fold,
// whitespace before a colon, repeated framing fields, chunk-size tricks).
// Its acceptance is a subset of net/http's, which a differential fuzz test
// keeps true.
//
// What is forwarded is written from the parsed message, never copied from
// the received bytes: the request line, Host and the framing fields are
// gatehouse's own (WriteRequestHead, ChunkWriter), so a target cannot
// disagree with gatehouse about where a message ends.
package h1
