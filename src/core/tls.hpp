// POOLS_FAST_TLS: thread-locals on the hot path use the initial-exec model.
// In a shared library the default (general-dynamic) model calls
// __tls_get_addr on every access: about 9 calls and 20 % of the instructions
// per task in the trivial-task benchmark (callgrind). initial-exec reads the
// thread pointer directly; glibc reserves static TLS for such libraries, and
// ours needs only a few dozen bytes.
#pragma once

#define POOLS_FAST_TLS [[gnu::tls_model("initial-exec")]]
