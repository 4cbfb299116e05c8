/*
 * A test double of libflagcx.so: the documented FlagCX C API (v0.13.0 signatures), in plain C
 * on host memory, for ONE rank. It is not FlagCX: it lets tests check what sglang-fl's ctypes
 * binding passes across the C boundary, and how it reacts to results and versions.
 *
 * Semantics
 *   - nranks == 1: collectives copy sendbuff -> recvbuff (a reduction over one rank is the
 *     identity); in place (send == recv) nothing moves. flagcxSend stores the buffer and the
 *     next flagcxRecv from peer 0 copies it.
 *   - nranks > 1: calls are recorded and validated but move no data (marshalling checks only).
 *   - flagcxStream_t is a pointer to a struct whose first member is the device stream handle,
 *     as in FlagCX's device adaptors; the double records both the pointer and that handle.
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
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))
#define UID_BYTES 256
#define LOG_SIZE 256
#define COMM_MAGIC 0xF1A6C0DEu

enum {
  RESULT_OK = 0,
  RESULT_INTERNAL = 3,
  RESULT_INVALID_ARGUMENT = 4,
  RESULT_INVALID_USAGE = 5,
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

static void record(const char *name, const void *send, void *recv, size_t count, int datatype,
                   int op, int root, int peer, void *comm, flagcxStream *stream) {
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
  memcpy(last_uid, unique_id->internal, UID_BYTES);
  flagcxComm *created = calloc(1, sizeof(*created));
  if (created == NULL) return RESULT_INTERNAL;
  created->magic = COMM_MAGIC;
  created->nranks = nranks;
  created->rank = rank;
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
  return rc ? rc : single_rank_copy(comm, sendbuff, recvbuff, count, datatype);
}
#endif

#ifndef OMIT_flagcxAllGather
EXPORT int flagcxAllGather(const void *sendbuff, void *recvbuff, size_t sendcount, int datatype,
                           flagcxComm *comm, flagcxStream *stream) {
  int rc = begin("flagcxAllGather", sendbuff, recvbuff, sendcount, datatype, -1, -1, -1, comm,
                 stream);
  return rc ? rc : single_rank_copy(comm, sendbuff, recvbuff, sendcount, datatype);
}
#endif

#ifndef OMIT_flagcxReduceScatter
EXPORT int flagcxReduceScatter(const void *sendbuff, void *recvbuff, size_t recvcount,
                               int datatype, int op, flagcxComm *comm, flagcxStream *stream) {
  int rc = begin("flagcxReduceScatter", sendbuff, recvbuff, recvcount, datatype, op, -1, -1, comm,
                 stream);
  return rc ? rc : single_rank_copy(comm, sendbuff, recvbuff, recvcount, datatype);
}
#endif

#ifndef OMIT_flagcxBroadcast
EXPORT int flagcxBroadcast(const void *sendbuff, void *recvbuff, size_t count, int datatype,
                           int root, flagcxComm *comm, flagcxStream *stream) {
  int rc = begin("flagcxBroadcast", sendbuff, recvbuff, count, datatype, -1, root, -1, comm,
                 stream);
  return rc ? rc : single_rank_copy(comm, sendbuff, recvbuff, count, datatype);
}
#endif

#ifndef OMIT_flagcxReduce
EXPORT int flagcxReduce(const void *sendbuff, void *recvbuff, size_t count, int datatype, int op,
                        int root, flagcxComm *comm, flagcxStream *stream) {
  int rc = begin("flagcxReduce", sendbuff, recvbuff, count, datatype, op, root, -1, comm, stream);
  return rc ? rc : single_rank_copy(comm, sendbuff, recvbuff, count, datatype);
}
#endif

#ifndef OMIT_flagcxSend
EXPORT int flagcxSend(const void *sendbuff, size_t count, int datatype, int peer,
                      flagcxComm *comm, flagcxStream *stream) {
  int rc = begin("flagcxSend", sendbuff, NULL, count, datatype, -1, -1, peer, comm, stream);
  if (rc) return rc;
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
  if (rc || comm->nranks != 1) return rc;
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
