/*
 * A test double of libflagcx.so: the documented FlagCX C API (v0.13.0 signatures), in plain C
 * on host memory, for ONE rank. It is not FlagCX: it lets tests check what sglang-fl's ctypes
 * binding passes across the C boundary, and how it reacts to results and versions.
 *
 * Semantics
 *   - nranks == 1: collectives copy sendbuff -> recvbuff (a reduction over one rank is the
 *     identity); in place (send == recv) nothing moves. flagcxSend stores the buffer and the
 *     next flagcxRecv from peer 0 copies it.
 *   - nranks > 1, one process (the default): calls are recorded and validated but move no
 *     data (marshalling checks only).
 *   - nranks > 1 across processes: when FLAGCX_DOUBLE_MULTIPROCESS=1 is set in the process
 *     that calls flagcxGetUniqueId, the id names a POSIX shared-memory segment that every
 *     rank's flagcxCommInitRank maps. Collectives then really move data between the
 *     processes (each rank copies its input into its slot, a barrier, each computes its
 *     result from all slots, a barrier; reductions in rank order, so every rank gets the
 *     same bits); flagcxSend/flagcxRecv go through a one-message mailbox per (src, dst).
 *     Calls run eagerly, also inside a group. Limits: 8 ranks, 16 MiB per rank and call,
 *     4 MiB per message; a wait longer than FLAGCX_DOUBLE_TIMEOUT_S (default 300) fails
 *     the call with flagcxRemoteError instead of hanging.
 *   - flagcxStream_t is a pointer to a struct whose first member is the device stream handle,
 *     as in FlagCX's device adaptors; the double records both the pointer and that handle.
 *   - FLAGCX_DOUBLE_TRACE=<file>: every API call appends "<pid> <function> <count>" to the
 *     file, so a test can see which calls a whole program (e.g. an SGLang server) made.
 *
 * Test controls (extra exports, never in FlagCX):
 *   double_set_version(v)         value flagcxGetVersion reports (default 1300 = 0.13.0)
 *   double_fail_next(name, code)  the next call of `name` returns `code` (after recording)
 *   double_reset()                clears the call log, failures, counters and mailbox
 *   double_call_count(), double_get_call(i, out), double_last_call(out)   the call log
 *   double_last_unique_id(out)    the 256 bytes flagcxCommInitRank last received
 *   double_init_count(), double_destroy_count(), double_live_comms()
 *
 * Build with -DOMIT_<symbol> (e.g. -DOMIT_flagcxReduceScatter) to leave one API symbol out.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))
#define UID_BYTES 256
#define LOG_SIZE 256
#define COMM_MAGIC 0xF1A6C0DEu

enum {
  RESULT_OK = 0,
  RESULT_INTERNAL = 3,
  RESULT_INVALID_ARGUMENT = 4,
  RESULT_INVALID_USAGE = 5,
  RESULT_REMOTE = 6,
};

typedef struct {
  unsigned char internal[UID_BYTES];
} flagcxUniqueId;

typedef struct flagcxStream {
  void *base;
} flagcxStream;

typedef struct flagcxComm {
  uint32_t magic;
  int nranks;
  int rank;
  unsigned char *shared; /* multi-process mode: the mapped segment, else NULL */
  size_t shared_bytes;
} flagcxComm;

/* One recorded call; tests mirror this layout with ctypes. -1 marks "not applicable". */
typedef struct {
  char name[32];
  const void *sendbuff;
  void *recvbuff;
  uint64_t count;
  int datatype;
  int op;
  int root;
  int peer;
  void *comm;
  void *stream;
  void *stream_base;
  int group_depth;
} double_call_t;

static int version_code = 1300;
static char fail_name[64];
static int fail_code;
static double_call_t call_log[LOG_SIZE];
static long call_count;
static int group_depth;
static unsigned char last_uid[UID_BYTES];
static long init_count, destroy_count, live_comms, uid_serial;
static const void *mailbox;
static size_t mailbox_bytes;

static const size_t dtype_size[] = {1, 1, 4, 4, 8, 8, 2, 4, 8, 2}; /* Int8 .. Bfloat16 */

/* ------------------------------------------------------------------------ test controls */

EXPORT void double_set_version(int code) { version_code = code; }

EXPORT void double_fail_next(const char *name, int code) {
  strncpy(fail_name, name, sizeof(fail_name) - 1);
  fail_name[sizeof(fail_name) - 1] = '\0';
  fail_code = code;
}

EXPORT void double_reset(void) {
  version_code = 1300;
  fail_name[0] = '\0';
  fail_code = 0;
  call_count = 0;
  group_depth = 0;
  mailbox = NULL;
  mailbox_bytes = 0;
  init_count = destroy_count = 0;
  memset(last_uid, 0, sizeof(last_uid));
}

EXPORT long double_call_count(void) { return call_count; }

EXPORT int double_get_call(long index, double_call_t *out) {
  if (index < 0 || index >= call_count || call_count - index > LOG_SIZE) return -1;
  *out = call_log[index % LOG_SIZE];
  return 0;
}

EXPORT int double_last_call(double_call_t *out) { return double_get_call(call_count - 1, out); }

EXPORT void double_last_unique_id(unsigned char *out) { memcpy(out, last_uid, UID_BYTES); }

EXPORT long double_init_count(void) { return init_count; }
EXPORT long double_destroy_count(void) { return destroy_count; }
EXPORT long double_live_comms(void) { return live_comms; }

/* ------------------------------------------------------------------------ helpers */

static int take_failure(const char *name) {
  if (fail_name[0] != '\0' && strcmp(fail_name, name) == 0) {
    fail_name[0] = '\0';
    return fail_code;
  }
  return RESULT_OK;
}

/* FLAGCX_DOUBLE_TRACE: one line per API call, appended (several processes share a file). */
static void trace(const char *name, size_t count) {
  const char *path = getenv("FLAGCX_DOUBLE_TRACE");
  if (path == NULL || path[0] == '\0') return;
  char line[96];
  int len = snprintf(line, sizeof(line), "%ld %s %zu\n", (long)getpid(), name, count);
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd < 0) return;
  if (write(fd, line, (size_t)len) != len) { /* best effort: a trace, not a result */ }
  close(fd);
}

static void record(const char *name, const void *send, void *recv, size_t count, int datatype,
                   int op, int root, int peer, void *comm, flagcxStream *stream) {
  trace(name, count);
  double_call_t *c = &call_log[call_count % LOG_SIZE];
  memset(c, 0, sizeof(*c));
  strncpy(c->name, name, sizeof(c->name) - 1);
  c->sendbuff = send;
  c->recvbuff = recv;
  c->count = (uint64_t)count;
  c->datatype = datatype;
  c->op = op;
  c->root = root;
  c->peer = peer;
  c->comm = comm;
  c->stream = stream;
  c->stream_base = stream ? stream->base : NULL;
  c->group_depth = group_depth;
  call_count++;
}

static int valid_comm(const flagcxComm *comm) { return comm != NULL && comm->magic == COMM_MAGIC; }
static int valid_dtype(int datatype) { return datatype >= 0 && datatype <= 9; }
static int valid_op(int op) { return op >= 0 && op <= 4; }
static int valid_rank(const flagcxComm *comm, int r) { return r >= 0 && r < comm->nranks; }

/* Record, then apply an injected failure, then validate the common arguments. */
static int begin(const char *name, const void *send, void *recv, size_t count, int datatype,
                 int op, int root, int peer, flagcxComm *comm, flagcxStream *stream) {
  record(name, send, recv, count, datatype, op, root, peer, comm, stream);
  int injected = take_failure(name);
  if (injected) return injected;
  if (!valid_comm(comm) || !valid_dtype(datatype)) return RESULT_INVALID_ARGUMENT;
  if (op != -1 && !valid_op(op)) return RESULT_INVALID_ARGUMENT;
  if (root != -1 && !valid_rank(comm, root)) return RESULT_INVALID_ARGUMENT;
  if (peer != -1 && !valid_rank(comm, peer)) return RESULT_INVALID_ARGUMENT;
  return RESULT_OK;
}

static int single_rank_copy(const flagcxComm *comm, const void *send, void *recv, size_t count,
                            int datatype) {
  if (comm->nranks == 1 && send != recv && count > 0) {
    memcpy(recv, send, count * dtype_size[datatype]);
  }
  return RESULT_OK;
}


/* ------------------------------------------------------------------------ multi-process mode */

#define MP_TAG "fcxd-shm"
#define MP_NAME_OFFSET 16
#define MP_MAX_RANKS 8
#define MP_HEADER_BYTES ((size_t)64 << 10)
#define MP_SLOT_BYTES ((size_t)16 << 20)
#define MP_MAIL_BYTES ((size_t)4 << 20)

typedef struct {
  atomic_uint arrived;
  atomic_uint generation;
  atomic_int mail_full[MP_MAX_RANKS][MP_MAX_RANKS]; /* [src][dst] */
  uint64_t mail_bytes[MP_MAX_RANKS][MP_MAX_RANKS];
} mp_header;

_Static_assert(sizeof(mp_header) <= MP_HEADER_BYTES, "header does not fit");

static int multiprocess_requested(void) {
  const char *value = getenv("FLAGCX_DOUBLE_MULTIPROCESS");
  return value != NULL && strcmp(value, "1") == 0;
}

static int is_multiprocess_id(const flagcxUniqueId *uid) {
  return memcmp(uid->internal, MP_TAG, sizeof(MP_TAG)) == 0;
}

static size_t mp_bytes(int nranks) {
  return MP_HEADER_BYTES + (size_t)nranks * MP_SLOT_BYTES +
         (size_t)nranks * (size_t)nranks * MP_MAIL_BYTES;
}

static mp_header *mp_head(const flagcxComm *c) { return (mp_header *)c->shared; }

static unsigned char *mp_slot(const flagcxComm *c, int rank) {
  return c->shared + MP_HEADER_BYTES + (size_t)rank * MP_SLOT_BYTES;
}

static unsigned char *mp_mailbox(const flagcxComm *c, int src, int dst) {
  return c->shared + MP_HEADER_BYTES + (size_t)c->nranks * MP_SLOT_BYTES +
         ((size_t)src * (size_t)c->nranks + (size_t)dst) * MP_MAIL_BYTES;
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Waiting: yield first, then sleep briefly; fail after FLAGCX_DOUBLE_TIMEOUT_S. */
typedef struct {
  double deadline;
  long spins;
} mp_waiter;

static mp_waiter mp_wait_start(void) {
  const char *value = getenv("FLAGCX_DOUBLE_TIMEOUT_S");
  double timeout = value != NULL ? atof(value) : 300.0;
  mp_waiter w = {now_s() + timeout, 0};
  return w;
}

static int mp_wait_more(mp_waiter *w) {
  if (++w->spins < 2000) {
    sched_yield();
    return 1;
  }
  struct timespec pause = {0, 20000};
  nanosleep(&pause, NULL);
  return (w->spins % 256) != 0 || now_s() < w->deadline;
}

static int mp_barrier(const flagcxComm *c) {
  mp_header *h = mp_head(c);
  unsigned generation = atomic_load(&h->generation);
  if (atomic_fetch_add(&h->arrived, 1) + 1 == (unsigned)c->nranks) {
    atomic_store(&h->arrived, 0);
    atomic_fetch_add(&h->generation, 1);
    return RESULT_OK;
  }
  mp_waiter w = mp_wait_start();
  while (atomic_load(&h->generation) == generation) {
    if (!mp_wait_more(&w)) return RESULT_REMOTE;
  }
  return RESULT_OK;
}

static int mp_attach(flagcxComm *c, const flagcxUniqueId *uid) {
  const char *name = (const char *)uid->internal + MP_NAME_OFFSET;
  size_t bytes = mp_bytes(c->nranks);
  int fd = shm_open(name, O_CREAT | O_RDWR, 0600);
  if (fd < 0) return RESULT_INTERNAL;
  if (ftruncate(fd, (off_t)bytes) != 0) {
    close(fd);
    return RESULT_INTERNAL;
  }
  void *base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (base == MAP_FAILED) return RESULT_INTERNAL;
  c->shared = base;
  c->shared_bytes = bytes;
  int rc = mp_barrier(c); /* every rank has mapped the segment ... */
  if (rc == RESULT_OK && c->rank == 0) shm_unlink(name); /* ... so its name can go */
  return rc;
}

/* Reductions, in rank order so every rank computes the same bits. */
static float bf16_load(uint16_t v) {
  uint32_t bits = (uint32_t)v << 16;
  float f;
  memcpy(&f, &bits, sizeof(f));
  return f;
}

static uint16_t bf16_store(float f) {
  uint32_t bits;
  memcpy(&bits, &f, sizeof(bits));
  if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x40u); /* NaN */
  bits += 0x7fffu + ((bits >> 16) & 1u); /* round to nearest even */
  return (uint16_t)(bits >> 16);
}

#define SAME(x) (x)
#define COMBINE(acc, x, op)                                                   \
  ((op) == 0 || (op) == 4 ? (acc) + (x)                                       \
   : (op) == 1            ? (acc) * (x)                                       \
   : (op) == 2            ? ((x) > (acc) ? (x) : (acc))                       \
                          : ((x) < (acc) ? (x) : (acc)))
#define REDUCE(T, A, LOAD, STORE)                                             \
  for (size_t i = 0; i < count; i++) {                                        \
    A acc = LOAD(((const T *)sources[0])[i]);                                 \
    for (int r = 1; r < n; r++) {                                             \
      A x = LOAD(((const T *)sources[r])[i]);                                 \
      acc = COMBINE(acc, x, op);                                              \
    }                                                                         \
    if (op == 4) acc = acc / (A)n;                                            \
    ((T *)out)[i] = STORE(acc);                                               \
  }

static int reduce_into(void *out, const unsigned char *const *sources, int n, size_t count,
                       int datatype, int op) {
  switch (datatype) {
    case 0: REDUCE(int8_t, int8_t, SAME, SAME) break;
    case 1: REDUCE(uint8_t, uint8_t, SAME, SAME) break;
    case 2: REDUCE(int32_t, int32_t, SAME, SAME) break;
    case 3: REDUCE(uint32_t, uint32_t, SAME, SAME) break;
    case 4: REDUCE(int64_t, int64_t, SAME, SAME) break;
    case 5: REDUCE(uint64_t, uint64_t, SAME, SAME) break;
#ifdef __FLT16_MAX__
    case 6: REDUCE(_Float16, float, SAME, (_Float16)) break;
#endif
    case 7: REDUCE(float, float, SAME, SAME) break;
    case 8: REDUCE(double, double, SAME, SAME) break;
    case 9: REDUCE(uint16_t, float, bf16_load, bf16_store) break;
    default: return RESULT_INVALID_ARGUMENT;
  }
  return RESULT_OK;
}

enum { MP_ALL_REDUCE, MP_ALL_GATHER, MP_REDUCE_SCATTER, MP_BROADCAST, MP_REDUCE };

/* One collective: copy in, barrier, compute this rank's result, barrier. */
static int mp_collective(int kind, const flagcxComm *c, const void *send, void *recv,
                         size_t count, int datatype, int op, int root) {
  size_t item = dtype_size[datatype], bytes = count * item;
  size_t in_bytes = kind == MP_REDUCE_SCATTER ? bytes * (size_t)c->nranks : bytes;
  if (in_bytes > MP_SLOT_BYTES) return RESULT_INVALID_USAGE;
  if (kind != MP_BROADCAST || c->rank == root) memcpy(mp_slot(c, c->rank), send, in_bytes);
  int rc = mp_barrier(c);
  if (rc) return rc;
  const unsigned char *sources[MP_MAX_RANKS];
  size_t offset = kind == MP_REDUCE_SCATTER ? (size_t)c->rank * bytes : 0;
  for (int r = 0; r < c->nranks; r++) sources[r] = mp_slot(c, r) + offset;
  switch (kind) {
    case MP_ALL_GATHER:
      for (int r = 0; r < c->nranks; r++) memcpy((unsigned char *)recv + r * bytes, sources[r], bytes);
      break;
    case MP_BROADCAST:
      memcpy(recv, sources[root], bytes);
      break;
    case MP_REDUCE:
      if (c->rank != root) break;
      /* fall through */
    default:
      rc = reduce_into(recv, sources, c->nranks, count, datatype, op);
  }
  int after = mp_barrier(c);
  return rc ? rc : after;
}

static int mp_send(const flagcxComm *c, const void *send, size_t bytes, int peer) {
  if (bytes > MP_MAIL_BYTES) return RESULT_INVALID_USAGE;
  mp_header *h = mp_head(c);
  atomic_int *full = &h->mail_full[c->rank][peer];
  mp_waiter w = mp_wait_start();
  while (atomic_load(full)) {
    if (!mp_wait_more(&w)) return RESULT_REMOTE;
  }
  memcpy(mp_mailbox(c, c->rank, peer), send, bytes);
  h->mail_bytes[c->rank][peer] = bytes;
  atomic_store(full, 1);
  return RESULT_OK;
}

static int mp_recv(const flagcxComm *c, void *recv, size_t bytes, int peer) {
  mp_header *h = mp_head(c);
  atomic_int *full = &h->mail_full[peer][c->rank];
  mp_waiter w = mp_wait_start();
  while (!atomic_load(full)) {
    if (!mp_wait_more(&w)) return RESULT_REMOTE;
  }
  int rc = h->mail_bytes[peer][c->rank] == bytes ? RESULT_OK : RESULT_INVALID_USAGE;
  if (rc == RESULT_OK) memcpy(recv, mp_mailbox(c, peer, c->rank), bytes);
  atomic_store(full, 0);
  return rc;
}

/* After the common checks: move the data of one call (multi-process or single rank). */
static int run(int kind, const flagcxComm *comm, const void *send, void *recv, size_t count,
               int datatype, int op, int root) {
  if (comm->shared != NULL) return mp_collective(kind, comm, send, recv, count, datatype, op, root);
  return single_rank_copy(comm, send, recv, count, datatype);
}

/* ------------------------------------------------------------------------ the C API */

#ifndef OMIT_flagcxGetErrorString
EXPORT const char *flagcxGetErrorString(int result) {
  switch (result) {
    case 0: return "no error";
    case 1: return "unhandled device error";
    case 2: return "unhandled system error";
    case 3: return "internal error";
    case 4: return "invalid argument";
    case 5: return "invalid usage";
    case 6: return "remote error";
    case 7: return "in progress";
    default: return "unknown result code";
  }
}
#endif

#ifndef OMIT_flagcxGetVersion
EXPORT int flagcxGetVersion(int *version) {
  int injected = take_failure("flagcxGetVersion");
  if (injected) return injected;
  if (version == NULL) return RESULT_INVALID_ARGUMENT;
  *version = version_code;
  return RESULT_OK;
}
#endif

#ifndef OMIT_flagcxGetUniqueId
EXPORT int flagcxGetUniqueId(flagcxUniqueId *unique_id) {
  int injected = take_failure("flagcxGetUniqueId");
  if (injected) return injected;
  if (unique_id == NULL) return RESULT_INVALID_ARGUMENT;
  uid_serial++;
  if (multiprocess_requested()) {
    memset(unique_id->internal, 0, UID_BYTES);
    memcpy(unique_id->internal, MP_TAG, sizeof(MP_TAG));
    snprintf((char *)unique_id->internal + MP_NAME_OFFSET, UID_BYTES - MP_NAME_OFFSET,
             "/fcxd-%ld-%ld-%ld", (long)getpid(), uid_serial, (long)(now_s() * 1e6));
    return RESULT_OK;
  }
  /* Every byte value appears, zeros included, so a binding that truncates at NUL shows. */
  for (int i = 0; i < UID_BYTES; i++) unique_id->internal[i] = (unsigned char)(i + uid_serial);
  return RESULT_OK;
}
#endif

#ifndef OMIT_flagcxCommInitRank
EXPORT int flagcxCommInitRank(flagcxComm **comm, int nranks, flagcxUniqueId *unique_id,
                              int rank) {
  int injected = take_failure("flagcxCommInitRank");
  if (injected) return injected;
  if (comm == NULL || unique_id == NULL || nranks < 1 || rank < 0 || rank >= nranks) {
    return RESULT_INVALID_ARGUMENT;
  }
  trace("flagcxCommInitRank", (size_t)nranks);
  memcpy(last_uid, unique_id->internal, UID_BYTES);
  int multiprocess = nranks > 1 && is_multiprocess_id(unique_id);
  if (multiprocess && nranks > MP_MAX_RANKS) return RESULT_INVALID_ARGUMENT;
  flagcxComm *created = calloc(1, sizeof(*created));
  if (created == NULL) return RESULT_INTERNAL;
  created->magic = COMM_MAGIC;
  created->nranks = nranks;
  created->rank = rank;
  if (multiprocess) {
    int rc = mp_attach(created, unique_id);
    if (rc) {
      if (created->shared != NULL) munmap(created->shared, created->shared_bytes);
      free(created);
      return rc;
    }
  }
  *comm = created;
  init_count++;
  live_comms++;
  return RESULT_OK;
}
#endif

#ifndef OMIT_flagcxCommDestroy
EXPORT int flagcxCommDestroy(flagcxComm *comm) {
  record("flagcxCommDestroy", NULL, NULL, 0, -1, -1, -1, -1, comm, NULL);
  int injected = take_failure("flagcxCommDestroy");
  if (injected) return injected;
  if (!valid_comm(comm)) return RESULT_INVALID_ARGUMENT;
  comm->magic = 0; /* not freed, so a second destroy of the same handle is detected, not UB */
  if (comm->shared != NULL) {
    munmap(comm->shared, comm->shared_bytes);
    comm->shared = NULL;
  }
  destroy_count++;
  live_comms--;
  return RESULT_OK;
}
#endif

#ifndef OMIT_flagcxCommCount
EXPORT int flagcxCommCount(const flagcxComm *comm, int *count) {
  int injected = take_failure("flagcxCommCount");
  if (injected) return injected;
  if (!valid_comm(comm) || count == NULL) return RESULT_INVALID_ARGUMENT;
  *count = comm->nranks;
  return RESULT_OK;
}
#endif

#ifndef OMIT_flagcxCommUserRank
EXPORT int flagcxCommUserRank(const flagcxComm *comm, int *rank) {
  int injected = take_failure("flagcxCommUserRank");
  if (injected) return injected;
  if (!valid_comm(comm) || rank == NULL) return RESULT_INVALID_ARGUMENT;
  *rank = comm->rank;
  return RESULT_OK;
}
#endif

#ifndef OMIT_flagcxAllReduce
EXPORT int flagcxAllReduce(const void *sendbuff, void *recvbuff, size_t count, int datatype,
                           int op, flagcxComm *comm, flagcxStream *stream) {
  int rc = begin("flagcxAllReduce", sendbuff, recvbuff, count, datatype, op, -1, -1, comm,
                 stream);
  return rc ? rc : run(MP_ALL_REDUCE, comm, sendbuff, recvbuff, count, datatype, op, -1);
}
#endif

#ifndef OMIT_flagcxAllGather
EXPORT int flagcxAllGather(const void *sendbuff, void *recvbuff, size_t sendcount, int datatype,
                           flagcxComm *comm, flagcxStream *stream) {
  int rc = begin("flagcxAllGather", sendbuff, recvbuff, sendcount, datatype, -1, -1, -1, comm,
                 stream);
  return rc ? rc : run(MP_ALL_GATHER, comm, sendbuff, recvbuff, sendcount, datatype, -1, -1);
}
#endif

#ifndef OMIT_flagcxReduceScatter
EXPORT int flagcxReduceScatter(const void *sendbuff, void *recvbuff, size_t recvcount,
                               int datatype, int op, flagcxComm *comm, flagcxStream *stream) {
  int rc = begin("flagcxReduceScatter", sendbuff, recvbuff, recvcount, datatype, op, -1, -1, comm,
                 stream);
  return rc ? rc : run(MP_REDUCE_SCATTER, comm, sendbuff, recvbuff, recvcount, datatype, op, -1);
}
#endif

#ifndef OMIT_flagcxBroadcast
EXPORT int flagcxBroadcast(const void *sendbuff, void *recvbuff, size_t count, int datatype,
                           int root, flagcxComm *comm, flagcxStream *stream) {
  int rc = begin("flagcxBroadcast", sendbuff, recvbuff, count, datatype, -1, root, -1, comm,
                 stream);
  return rc ? rc : run(MP_BROADCAST, comm, sendbuff, recvbuff, count, datatype, -1, root);
}
#endif

#ifndef OMIT_flagcxReduce
EXPORT int flagcxReduce(const void *sendbuff, void *recvbuff, size_t count, int datatype, int op,
                        int root, flagcxComm *comm, flagcxStream *stream) {
  int rc = begin("flagcxReduce", sendbuff, recvbuff, count, datatype, op, root, -1, comm, stream);
  return rc ? rc : run(MP_REDUCE, comm, sendbuff, recvbuff, count, datatype, op, root);
}
#endif

#ifndef OMIT_flagcxSend
EXPORT int flagcxSend(const void *sendbuff, size_t count, int datatype, int peer,
                      flagcxComm *comm, flagcxStream *stream) {
  int rc = begin("flagcxSend", sendbuff, NULL, count, datatype, -1, -1, peer, comm, stream);
  if (rc) return rc;
  if (comm->shared != NULL) return mp_send(comm, sendbuff, count * dtype_size[datatype], peer);
  if (comm->nranks == 1) {
    mailbox = sendbuff;
    mailbox_bytes = count * dtype_size[datatype];
  }
  return RESULT_OK;
}
#endif

#ifndef OMIT_flagcxRecv
EXPORT int flagcxRecv(void *recvbuff, size_t count, int datatype, int peer, flagcxComm *comm,
                      flagcxStream *stream) {
  int rc = begin("flagcxRecv", NULL, recvbuff, count, datatype, -1, -1, peer, comm, stream);
  if (rc) return rc;
  if (comm->shared != NULL) return mp_recv(comm, recvbuff, count * dtype_size[datatype], peer);
  if (comm->nranks != 1) return rc;
  if (mailbox == NULL || mailbox_bytes != count * dtype_size[datatype]) {
    return RESULT_INVALID_USAGE; /* no matching flagcxSend to self */
  }
  if (count > 0) memcpy(recvbuff, mailbox, mailbox_bytes);
  mailbox = NULL;
  mailbox_bytes = 0;
  return RESULT_OK;
}
#endif

#ifndef OMIT_flagcxGroupStart
EXPORT int flagcxGroupStart(flagcxComm *comm) {
  record("flagcxGroupStart", NULL, NULL, 0, -1, -1, -1, -1, comm, NULL);
  int injected = take_failure("flagcxGroupStart");
  if (injected) return injected;
  if (!valid_comm(comm)) return RESULT_INVALID_ARGUMENT;
  group_depth++;
  return RESULT_OK;
}
#endif

#ifndef OMIT_flagcxGroupEnd
EXPORT int flagcxGroupEnd(flagcxComm *comm) {
  record("flagcxGroupEnd", NULL, NULL, 0, -1, -1, -1, -1, comm, NULL);
  int injected = take_failure("flagcxGroupEnd");
  if (injected) return injected;
  if (!valid_comm(comm)) return RESULT_INVALID_ARGUMENT;
  if (group_depth == 0) return RESULT_INVALID_USAGE;
  group_depth--;
  return RESULT_OK;
}
#endif
