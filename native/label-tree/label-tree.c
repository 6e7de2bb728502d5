/*
 * svirt-label-tree: the root helper's tree relabeler. It labels a whole directory tree in one walk,
 * remembering each file's label before it changes it, and puts remembered labels back.
 *
 * Why a program of its own: the helper keeps every original label (so that "restore" gives back exactly
 * what was there, not a policy default as podman's :z and restorecon do). Reading each label with
 * getfattr, journaling it as JSON and writing with setfattr cost five times what `chcon -R` costs;
 * reading and writing in the same walk, here, costs about what chcon costs.
 *
 *   svirt-label-tree label --label LABEL --uid UID [--any-owner] [--pool REL]... [--in-pool POOL] --root-path PATH
 *       fd 3: the tree's root (directory or file), opened and checked by the helper
 *       fd 4: the log, opened by the helper for appending; stdin: prior originals, lines
 *       "INO BIRTH|- HEX|-" or whole log records (their third field is the original)
 *   svirt-label-tree restore --use original|before [--under REL] --root-path PATH
 *       fd 3: the tree's root; stdin: a log written by `label`
 *   svirt-label-tree serve
 *       one file's label (and FIFOs) per request line, for as long as stdin stays open (see do_serve)
 *   svirt-label-tree pipe-size BYTES
 *       stdin: a pipe (a VM's serial line FIFO); sets its capacity (F_SETPIPE_SZ), prints the one it got
 *
 * Log records, one per line: "INO BIRTH ORIGINAL BEFORE RELPATH". BIRTH is the file's birth time
 * ("SEC.NSEC", "-" where the file system keeps none): with the inode number it tells a file from a new
 * one that reuses the number. ORIGINAL and BEFORE are the attribute's exact bytes in hex, or "-" (none):
 * ORIGINAL is the label before the helper's first relabel (a prior's, when the file has one), BEFORE the
 * label this run found ("=" when the two are equal). RELPATH is "." for the root. Records are
 * fdatasync'ed before any label they cover is written, so after a crash at any point the log restores
 * every file already changed.
 *
 * Stdout, line by line: "progress N" (N more files done), "skipped REASON RELPATH" (REASON: symlink,
 * special, mount, gone, replaced), then "done" (label) or "restored N" (restore).
 * Exit status: 0 done; 3 refused (stderr: "refused\tABSPATH\tREASON"), 1 any other error. After a
 * failed `label`, the labels already applied are in the log: the caller rolls them back with
 * `restore --use before`.
 *
 * Rules, the helper's TypeScript path rules compiled in from the same specification (path-rules.h,
 * generated from src/core/path-rules.json): PATH must be a normal absolute path, not a system directory
 * and not under a system tree unless it lies inside POOL (an image pool the helper found the requester
 * may use); the root must be a file or a directory; every file must belong to UID unless --any-owner or
 * under a --pool (shared pools); a name with control characters is refused. Inside the tree, symbolic
 * links, devices, FIFOs and sockets are skipped, never followed or labeled; the walk stays on the root's
 * file system; a directory must still be the inode seen when it was listed, and the walk works inside
 * directory fds (fchdir), so a directory swapped for a symlink cannot lead it out of the tree. The helper
 * applies these rules before it starts the tool; the tool applies them again on what it is handed.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <search.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "path-rules.h"

#define XATTR "security.selinux"
#define ROOT_FD 3
#define LOG_FD 4
/* Attribute values longer than this are not SELinux labels (the kernel's limit is a page). */
#define MAX_VALUE 4096
/* Records written (and fdatasync'ed) before the labels they cover are set: a few syncs per 10,000 files. */
#define SYNC_EVERY 8192
/* Directories held open while their entries wait for the next sync. */
#define MAX_PENDING_DIRS 256
#define PROGRESS_EVERY 4096

static const char *root_path;

/* Worker processes (see start_workers); worker 0 is the first process, the others its children. */
static unsigned worker, workers = 1;
static pid_t children[8];

/*
 * Every way out of worker 0 goes through here: its other workers are killed and waited for first, so
 * that once the tool has exited nothing labels any more (the caller may roll back at once), and every
 * label they wrote is in the log (they log before they label).
 */
static void finish(int status) {
  if (worker == 0) {
    /* Only live pids: kill(0, …) would signal the whole process group. */
    for (unsigned w = 1; w < workers; w++)
      if (children[w] > 0) kill(children[w], SIGKILL);
    for (unsigned w = 1; w < workers; w++) {
      while (children[w] > 0 && waitpid(children[w], NULL, 0) < 0 && errno == EINTR) {
      }
      children[w] = 0;
    }
  }
  exit(status);
}

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("svirt-label-tree: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  finish(1);
}

static void *xmalloc(size_t n) {
  void *p = malloc(n);
  if (!p) die("out of memory");
  return p;
}

static char *xstrdup(const char *s) {
  char *p = strdup(s);
  if (!p) die("out of memory");
  return p;
}

/* "." for the root, else "a/b"; joined for messages and records. */
static char *join(const char *dir, const char *name) {
  if (strcmp(dir, ".") == 0) return xstrdup(name);
  size_t a = strlen(dir), b = strlen(name);
  char *p = xmalloc(a + b + 2);
  memcpy(p, dir, a);
  p[a] = '/';
  memcpy(p + a + 1, name, b + 1);
  return p;
}

__attribute__((format(printf, 2, 3))) static void refuse(const char *rel, const char *fmt, ...) {
  char reason[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(reason, sizeof reason, fmt, ap);
  va_end(ap);
  if (strcmp(rel, ".") == 0) fprintf(stderr, "refused\t%s\t%s\n", root_path, reason);
  else fprintf(stderr, "refused\t%s/%s\t%s\n", strcmp(root_path, "/") == 0 ? "" : root_path, rel, reason);
  finish(3);
}

static bool has_control_chars(const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    if (rules_control_char(*p)) return true;
  return false;
}

/* Whether path p is dir or lies below it (both absolute and normal, without a trailing slash). */
static bool is_under(const char *p, const char *dir) {
  size_t n = strlen(dir);
  if (strcmp(dir, "/") == 0) return true;
  return strncmp(p, dir, n) == 0 && (p[n] == '\0' || p[n] == '/');
}

/* A copy of p without trailing slashes ("/" stays "/"). */
static char *strip_slashes(const char *p) {
  char *s = xstrdup(p);
  for (size_t n = strlen(s); n > 1 && s[n - 1] == '/'; n--) s[n - 1] = '\0';
  return s;
}

static const char *pool_path; /* --in-pool: the image pool holding the root, one the requester may use */

/* The root's path: well formed, and not the host's (system directories and trees) unless in the pool. */
static void check_root_path(void) {
  const char *t = root_path;
  if (*t == '\0') refuse(".", REASON_EMPTY);
  if (has_control_chars(t)) refuse(".", REASON_CONTROL_CHARACTERS);
  if (*t != '/') refuse(".", REASON_NOT_ABSOLUTE);
  for (const char *seg = t; seg; seg = strchr(seg + 1, '/')) {
    const char *s = seg + 1;
    if ((s[0] == '.' && (s[1] == '/' || s[1] == '\0')) || (s[0] == '.' && s[1] == '.' && (s[2] == '/' || s[2] == '\0'))) refuse(".", REASON_DOT_SEGMENTS);
  }
  /* Without dot segments, the normal form only folds runs of slashes (one trailing slash may stay). */
  size_t len = strlen(t), n = 0;
  char *normal = xmalloc(len + 1);
  for (size_t i = 0; i < len; i++)
    if (t[i] != '/' || n == 0 || normal[n - 1] != '/') normal[n++] = t[i];
  normal[n] = '\0';
  if (strcmp(normal, t) != 0 && !(n + 1 == len && strncmp(normal, t, n) == 0 && t[n] == '/')) refuse(".", REASON_NOT_NORMAL, normal);
  free(normal);
  char *p = strip_slashes(t);
  for (size_t i = 0; i < RULES_N_SYSTEM_DIRS; i++)
    if (strcmp(p, RULES_SYSTEM_DIRS[i]) == 0) refuse(".", REASON_SYSTEM_DIR, p);
  if (pool_path) {
    char *pool = strip_slashes(pool_path);
    bool inside = is_under(p, pool) && strcmp(p, pool) != 0;
    free(pool);
    if (inside) {
      free(p);
      return;
    }
  }
  for (size_t i = 0; i < RULES_N_SYSTEM_TREES; i++)
    if (is_under(p, RULES_SYSTEM_TREES[i])) refuse(".", REASON_SYSTEM_TREE, RULES_SYSTEM_TREES[i], RULES_SYSTEM_TREE_HINTS[i]);
  free(p);
}

/* ---- what the walk needs of a file, from statx (for the birth time) ---- */

struct entry_stat {
  mode_t mode;
  uid_t uid;
  ino_t ino;
  dev_t dev;
  nlink_t nlink;
  char birth[32]; /* "SEC.NSEC" or "-" */
};

/* Like fstatat(dir_fd, name, AT_SYMLINK_NOFOLLOW); name "" with AT_EMPTY_PATH stats dir_fd itself. */
static int stat_entry(int dir_fd, const char *name, int flags, struct entry_stat *out) {
  struct statx sx;
  if (statx(dir_fd, name, flags | AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS | STATX_BTIME, &sx) != 0) return -1;
  out->mode = sx.stx_mode;
  out->uid = sx.stx_uid;
  out->ino = (ino_t)sx.stx_ino;
  out->dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
  out->nlink = sx.stx_nlink;
  if (sx.stx_mask & STATX_BTIME) snprintf(out->birth, sizeof out->birth, "%lld.%u", (long long)sx.stx_btime.tv_sec, sx.stx_btime.tv_nsec);
  else strcpy(out->birth, "-");
  return 0;
}

/* Two birth times name the same file unless both are known and differ. */
static bool same_birth(const char *a, const char *b) {
  return strcmp(a, "-") == 0 || strcmp(b, "-") == 0 || strcmp(a, b) == 0;
}

/* ---- attribute values as hex ("-" when absent) ---- */

static char *to_hex(const unsigned char *v, ssize_t n) {
  static const char digits[] = "0123456789abcdef";
  if (n < 0) return xstrdup("-");
  char *h = xmalloc((size_t)n * 2 + 1);
  for (ssize_t i = 0; i < n; i++) {
    h[2 * i] = digits[v[i] >> 4];
    h[2 * i + 1] = digits[v[i] & 15];
  }
  h[2 * n] = '\0';
  return h;
}

static int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* Decodes HEX into buf; returns the length, -1 for "-" (no label); dies on malformed input. */
static ssize_t from_hex(const char *hex, unsigned char *buf, size_t cap) {
  if (strcmp(hex, "-") == 0) return -1;
  size_t n = strlen(hex);
  if (n % 2 != 0 || n / 2 > cap) die("malformed label value in input: %.40s", hex);
  for (size_t i = 0; i < n / 2; i++) {
    int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) die("malformed label value in input: %.40s", hex);
    buf[i] = (unsigned char)(hi << 4 | lo);
  }
  return (ssize_t)(n / 2);
}

/* ---- inode → original label (hex): from earlier relabels (priors) and hard links seen in this walk ---- */

/* Priors: stdin read whole, each line "INO BIRTH HEX[ ...]", sorted by inode; the first line for a file wins. */
struct prior {
  ino_t ino;
  size_t seq;
  const char *birth;
  const char *hex;
};
static struct prior *priors;
static size_t n_priors;

static int prior_cmp(const void *a, const void *b) {
  const struct prior *x = a, *y = b;
  if (x->ino != y->ino) return x->ino < y->ino ? -1 : 1;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static bool valid_hex(const char *hex) {
  if (strcmp(hex, "-") == 0) return true;
  size_t n = strlen(hex);
  if (n == 0 || n % 2 != 0 || n / 2 > MAX_VALUE) return false;
  for (const char *p = hex; *p; p++)
    if (hex_digit(*p) < 0) return false;
  return true;
}

static void read_priors(void) {
  size_t cap = 1 << 16, len = 0;
  char *text = xmalloc(cap);
  for (;;) {
    if (len + 1 >= cap) {
      cap *= 2;
      text = realloc(text, cap);
      if (!text) die("out of memory");
    }
    ssize_t n = read(STDIN_FILENO, text + len, cap - len - 1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die("cannot read the prior originals: %s", strerror(errno));
    if (n == 0) break;
    len += (size_t)n;
  }
  text[len] = '\0';
  size_t lines = 0;
  for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
  priors = xmalloc((lines + 1) * sizeof *priors);
  for (char *line = text; *line;) {
    char *eol = strchr(line, '\n');
    if (!eol) break; /* torn by a crash (see restore) */
    *eol = '\0';
    char *birth = strchr(line, ' ');
    char *hex = birth ? strchr(birth + 1, ' ') : NULL;
    if (!hex) die("malformed prior original: %.60s", line);
    *birth++ = '\0';
    *hex++ = '\0';
    char *more = strchr(hex, ' ');
    if (more) *more = '\0'; /* a log record: the original is its third field */
    char *end;
    errno = 0;
    unsigned long long ino = strtoull(line, &end, 10);
    if (errno != 0 || *end != '\0' || end == line || !valid_hex(hex) || strlen(birth) >= 32) die("malformed prior original: %.60s", line);
    priors[n_priors] = (struct prior){.ino = (ino_t)ino, .seq = n_priors, .birth = birth, .hex = hex};
    n_priors++;
    line = eol + 1;
  }
  qsort(priors, n_priors, sizeof *priors, prior_cmp);
}

static const char *prior_original(ino_t ino, const char *birth) {
  size_t lo = 0, hi = n_priors;
  while (lo < hi) { /* the first entry with this inode: the lowest seq sorts first */
    size_t mid = lo + (hi - lo) / 2;
    if (priors[mid].ino < ino) lo = mid + 1;
    else hi = mid;
  }
  for (; lo < n_priors && priors[lo].ino == ino; lo++)
    if (same_birth(priors[lo].birth, birth)) return priors[lo].hex;
  return NULL;
}

struct known {
  ino_t ino;
  char *original;
};

static void *hard_links; /* tsearch tree: inodes with several names, seen in this walk */

static int known_cmp(const void *a, const void *b) {
  ino_t x = ((const struct known *)a)->ino, y = ((const struct known *)b)->ino;
  return x < y ? -1 : x > y;
}

static const char *hard_link_original(ino_t ino) {
  struct known key = {.ino = ino};
  struct known **found = tfind(&key, &hard_links, known_cmp);
  return found ? (*found)->original : NULL;
}

static void remember_hard_link(ino_t ino, const char *original) {
  struct known *k = xmalloc(sizeof *k);
  k->ino = ino;
  k->original = xstrdup(original);
  if (!tsearch(k, &hard_links, known_cmp)) die("out of memory");
}

/* ---- output: whole lines per write(2), so that workers sharing a pipe or the log never interleave ---- */

struct outbuf {
  int fd;
  /* At most this much per write: the log appends atomically (O_APPEND); a pipe only up to PIPE_BUF. */
  size_t limit;
  size_t len;
  char data[1 << 16];
};

static void out_flush(struct outbuf *b) {
  size_t off = 0;
  while (off < b->len) {
    ssize_t n = write(b->fd, b->data + off, b->len - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) die("cannot write: %s", strerror(errno));
    off += (size_t)n;
  }
  b->len = 0;
}

static void out_line(struct outbuf *b, const char *fmt, ...) {
  char line[24576]; /* a record: a path (< 4096 bytes) and two values (< 8192 hex digits each) */
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof line) die("record too long");
  if (b->len + (size_t)n > b->limit) out_flush(b);
  /* A line longer than the limit (a path near PATH_MAX on stdout) goes out alone; it may then interleave. */
  memcpy(b->data + b->len, line, (size_t)n);
  b->len += (size_t)n;
}

static struct outbuf log_out = {.fd = LOG_FD, .limit = sizeof log_out.data};
static struct outbuf std_out = {.fd = STDOUT_FILENO, .limit = PIPE_BUF};

/* ---- labeling ---- */

static const char *label;
static size_t label_len; /* with the trailing NUL, as libselinux writes it */
static uid_t owner_uid;
static bool any_owner;
static char **pools; /* relative paths inside the tree whose files anyone may own (shared pools the requester may use) */
static size_t n_pools;
static dev_t root_dev;

/*
 * Several worker processes share the walk: every worker lists every directory, and the entries are
 * dealt out by their inode number (from readdir), which is stable while a directory changes (an index
 * would shift) and sends every name of a hard-linked file to the same worker, which alone can tell its
 * original from its new label. Each worker keeps its own log records, syncs and labels. Listing costs
 * little next to the attributes.
 */
static bool mine(ino_t ino) {
  uint64_t h = (uint64_t)ino * 0x9E3779B97F4A7C15u; /* mixed: inode numbers come in runs */
  return (h >> 32) % workers == worker;
}

static size_t unsynced;
static unsigned long labeled, reported;

/* An entry whose record is written but not yet synced: labeled after the next sync. */
struct pending_entry {
  char *rel;        /* its path in the tree; the name is the last component */
  const char *name; /* in rel */
  ino_t ino;        /* what the walk saw: the name must still be this file when it is labeled */
};

struct pending_dir {
  unsigned long walk_id; /* which walk() listed them: fd numbers are reused, ids are not */
  int fd;
  struct pending_entry *entries;
  size_t n, cap;
};
static struct pending_dir pending[MAX_PENDING_DIRS];
static size_t n_pending;
static bool root_pending;
/* Set when a flush labeled entries elsewhere: the walk must fchdir back into its directory. */
static bool cwd_moved;

static bool in_pool(const char *rel) {
  for (size_t i = 0; i < n_pools; i++) {
    size_t n = strlen(pools[i]);
    if (strncmp(rel, pools[i], n) == 0 && (rel[n] == '/' || rel[n] == '\0')) return true;
  }
  return false;
}

static void report_progress(void) {
  if (labeled == reported) return;
  out_line(&std_out, "progress %lu\n", labeled - reported);
  out_flush(&std_out);
  reported = labeled;
}

/* Worker 0, between batches: a worker that failed (a refusal) ends the walk now, not at its end. */
static void check_workers(void) {
  for (unsigned w = 1; w < workers; w++) {
    int status;
    if (children[w] <= 0 || waitpid(children[w], &status, WNOHANG) != children[w]) continue;
    children[w] = 0;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    if (code != 0) finish(code);
  }
}

/* Makes this worker's log records durable, then applies every label they cover. */
static void flush_pending(void) {
  if (worker == 0) check_workers();
  out_flush(&log_out);
  if (fdatasync(LOG_FD) != 0) die("cannot sync the log: %s", strerror(errno));
  unsynced = 0;
  if (root_pending) {
    if (fsetxattr(ROOT_FD, XATTR, label, label_len, 0) != 0) die("cannot label the root: %s", strerror(errno));
    root_pending = false;
    labeled++;
  }
  for (size_t i = 0; i < n_pending; i++) {
    struct pending_dir *d = &pending[i];
    if (fchdir(d->fd) != 0) die("cannot enter a directory: %s", strerror(errno));
    for (size_t j = 0; j < d->n; j++) {
      struct pending_entry *e = &d->entries[j];
      /* The walk checked this inode (owner, type); a name swapped since (for a hard link to another
         user's file, say) must not get the label. What is left is the usual race of a path-based tool. */
      struct stat now;
      if (fstatat(d->fd, e->name, &now, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno != ENOENT) die("cannot stat %s: %s", e->rel, strerror(errno));
      } else if (now.st_ino != e->ino) {
        refuse(e->rel, "it was replaced while the tree was being relabeled");
      } else if (lsetxattr(e->name, XATTR, label, label_len, 0) != 0) {
        die("cannot label %s: %s", e->rel, strerror(errno));
      }
      free(e->rel);
    }
    labeled += d->n;
    free(d->entries);
    close(d->fd);
  }
  n_pending = 0;
  cwd_moved = true;
  report_progress();
}

static struct pending_dir *pending_for(int dir_fd, unsigned long walk_id) {
  if (n_pending > 0 && pending[n_pending - 1].walk_id == walk_id) return &pending[n_pending - 1];
  struct pending_dir *d = &pending[n_pending++];
  d->walk_id = walk_id;
  d->fd = dup(dir_fd);
  if (d->fd < 0) die("dup: %s", strerror(errno));
  d->entries = NULL;
  d->n = d->cap = 0;
  return d;
}

/* The last value read and its hex: the files of a tree mostly share one label. */
static unsigned char last_value[MAX_VALUE];
static ssize_t last_len = -2;
static char *last_hex;

static const char *hex_of(const unsigned char *v, ssize_t n) {
  if (n != last_len || (n > 0 && memcmp(v, last_value, (size_t)n) != 0)) {
    free(last_hex);
    last_hex = to_hex(v, n);
    last_len = n;
    if (n > 0) memcpy(last_value, v, (size_t)n);
  }
  return last_hex;
}

/* Writes the record of one entry (with the label it has now) and queues its new label. */
static void record(int dir_fd, unsigned long walk_id, const char *rel, const struct entry_stat *st, ssize_t n, const unsigned char *value) {
  const char *before = hex_of(value, n);
  const char *original = n_priors > 0 ? prior_original(st->ino, st->birth) : NULL;
  if (!original && st->nlink > 1) {
    /* Another name of this inode may have been labeled already (always by this worker): its first
       record holds the label the file had. */
    original = hard_link_original(st->ino);
    if (!original) remember_hard_link(st->ino, before);
  }
  if (!original) original = before;
  unsigned long ino = (unsigned long)st->ino;
  if (strcmp(original, before) == 0) out_line(&log_out, "%lu %s %s = %s\n", ino, st->birth, original, rel);
  else out_line(&log_out, "%lu %s %s %s %s\n", ino, st->birth, original, before, rel);
  unsynced++;
  if (dir_fd < 0) {
    root_pending = true;
  } else {
    struct pending_dir *d = pending_for(dir_fd, walk_id);
    if (d->n == d->cap) {
      d->cap = d->cap ? d->cap * 2 : 64;
      d->entries = realloc(d->entries, d->cap * sizeof *d->entries);
      if (!d->entries) die("out of memory");
    }
    char *copy = xstrdup(rel);
    const char *slash = strrchr(copy, '/');
    d->entries[d->n++] = (struct pending_entry){.rel = copy, .name = slash ? slash + 1 : copy, .ino = st->ino};
  }
  if (unsynced >= SYNC_EVERY || n_pending == MAX_PENDING_DIRS) flush_pending();
}

static ssize_t checked_value(ssize_t n, const char *what) {
  if (n < 0 && errno != ENODATA && errno != ENOTSUP) die("cannot read the label of %s: %s", what, strerror(errno));
  return n < 0 ? -1 : n;
}

static void check_owner(const char *rel, const struct entry_stat *st, bool pooled) {
  if (any_owner || pooled || st->uid == owner_uid) return;
  if (pool_path) refuse(rel, REASON_NOT_OWNER REASON_POOL_NOT_SHARED, (unsigned long)st->uid, (unsigned long)owner_uid, pool_path);
  refuse(rel, REASON_NOT_OWNER, (unsigned long)st->uid, (unsigned long)owner_uid);
}

/* Why the root may not be labeled for its file type; NULL for a file or a directory. */
static const char *kind_refusal(mode_t mode) {
  if (S_ISREG(mode) || S_ISDIR(mode)) return NULL;
  if (S_ISLNK(mode)) return KIND_SYMLINK;
  if (S_ISCHR(mode)) return KIND_CHAR;
  if (S_ISBLK(mode)) return KIND_BLOCK;
  if (S_ISFIFO(mode)) return KIND_FIFO;
  if (S_ISSOCK(mode)) return KIND_SOCKET;
  return KIND_OTHER;
}

static void skip(const char *rel, const char *reason) {
  out_line(&std_out, "skipped %s %s\n", reason, rel); /* the reason first: a relative path may hold spaces */
}

struct subdir {
  char *name;
  ino_t ino;
  bool owned; /* listed by this worker, which then refuses a swap; other workers just do not descend */
};

static unsigned long walks;

/* Labels this worker's share of the directory open as dir_fd (relative path rel), then walks its subdirectories. */
static void walk(int dir_fd, const char *rel) {
  unsigned long walk_id = ++walks;
  if (fchdir(dir_fd) != 0) die("cannot enter %s: %s", rel, strerror(errno));
  cwd_moved = false;
  /* A new open file description: a dup() would share the read position with the other workers. */
  int list_fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *dir = list_fd < 0 ? NULL : fdopendir(list_fd);
  if (!dir) die("cannot list %s: %s", rel, strerror(errno));
  bool pooled = in_pool(rel);
  struct subdir *subdirs = NULL;
  size_t n_sub = 0, cap_sub = 0;
  struct dirent *e;
  errno = 0;
  while ((e = readdir(dir)) != NULL) {
    const char *name = e->d_name;
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) continue;
    if (has_control_chars(name)) {
      char *child = join(rel, name);
      refuse(child, REASON_NAME_CONTROL_CHARACTERS);
    }
    bool owned = mine(e->d_ino);
    struct entry_stat st;
    bool is_dir;
    if (owned || e->d_type == DT_UNKNOWN) {
      if (stat_entry(dir_fd, name, 0, &st) != 0) {
        if (errno == ENOENT) { errno = 0; continue; } /* removed while we walk: nothing to label */
        die("cannot stat %s/%s: %s", rel, name, strerror(errno));
      }
      is_dir = S_ISDIR(st.mode) && st.dev == root_dev;
    } else {
      is_dir = e->d_type == DT_DIR;
      st.ino = e->d_ino;
    }
    if (owned) {
      char *child = join(rel, name);
      if (S_ISLNK(st.mode)) skip(child, "symlink");
      else if (!S_ISREG(st.mode) && !S_ISDIR(st.mode)) skip(child, "special");
      else if (st.dev != root_dev) skip(child, "mount");
      else {
        check_owner(child, &st, pooled || in_pool(child));
        if (cwd_moved) {
          if (fchdir(dir_fd) != 0) die("cannot enter %s: %s", rel, strerror(errno));
          cwd_moved = false;
        }
        unsigned char value[MAX_VALUE];
        ssize_t n = checked_value(lgetxattr(name, XATTR, value, sizeof value), child);
        record(dir_fd, walk_id, child, &st, n, value);
      }
      free(child);
    }
    if (is_dir) {
      if (n_sub == cap_sub) {
        cap_sub = cap_sub ? cap_sub * 2 : 16;
        subdirs = realloc(subdirs, cap_sub * sizeof *subdirs);
        if (!subdirs) die("out of memory");
      }
      subdirs[n_sub++] = (struct subdir){.name = xstrdup(name), .ino = st.ino, .owned = owned};
    }
    errno = 0;
  }
  if (errno != 0) die("cannot list %s: %s", rel, strerror(errno));
  closedir(dir);
  for (size_t i = 0; i < n_sub; i++) {
    struct subdir *sd = &subdirs[i];
    char *child = join(rel, sd->name);
    int fd = openat(dir_fd, sd->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    bool same = fd >= 0 && fstat(fd, &st) == 0 && st.st_ino == sd->ino && st.st_dev == root_dev;
    if (same) walk(fd, child);
    else if (sd->owned) refuse(child, "it was replaced while the tree was being relabeled");
    if (fd >= 0) close(fd);
    free(child);
    free(sd->name);
  }
  free(subdirs);
}

/* Starts workers-1 more processes; this one is worker 0. */
static void start_workers(void) {
  /* The CPUs this process may run on (taskset, cpusets), not all the machine has. */
  cpu_set_t allowed;
  int cpus = sched_getaffinity(0, sizeof allowed, &allowed) == 0 ? CPU_COUNT(&allowed) : 1;
  workers = cpus < 1 ? 1 : cpus > 4 ? 4 : (unsigned)cpus;
  for (unsigned w = 1; w < workers; w++) {
    pid_t pid = fork();
    if (pid < 0) die("fork: %s", strerror(errno)); /* the workers already started are ended by die() */
    if (pid == 0) {
      worker = w;
      /* A worker dies with worker 0, whatever ends it (the helper may kill the tool). */
      if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() == 1) _exit(1);
      return;
    }
    children[w] = pid;
  }
}

/* Worker 0 waits for the others; the first failure is the tool's (the rest are stopped). */
static int wait_workers(void) {
  int result = 0;
  for (unsigned w = 1; w < workers; w++) {
    if (children[w] <= 0) continue; /* reaped by check_workers: it succeeded */
    int status;
    while (waitpid(children[w], &status, 0) < 0) {
      if (errno != EINTR) die("waitpid: %s", strerror(errno));
    }
    children[w] = 0;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    if (code != 0 && result == 0) {
      result = code;
      for (unsigned o = w + 1; o < workers; o++)
        if (children[o] > 0) kill(children[o], SIGKILL);
    }
  }
  return result;
}

static int do_label(void) {
  struct entry_stat st;
  if (stat_entry(ROOT_FD, "", AT_EMPTY_PATH, &st) != 0) die("fd 3 (the root) is not open: %s", strerror(errno));
  root_dev = st.dev;
  int flags = fcntl(LOG_FD, F_GETFL);
  if (flags < 0 || fcntl(LOG_FD, F_SETFL, flags | O_APPEND) != 0) die("fd 4 (the log) is not open: %s", strerror(errno));
  read_priors();
  const char *refusal = kind_refusal(st.mode);
  if (refusal) refuse(".", "%s", refusal);
  check_owner(".", &st, any_owner || in_pool("."));
  if (S_ISDIR(st.mode)) start_workers();
  if (worker == 0) {
    unsigned char value[MAX_VALUE];
    ssize_t n = checked_value(fgetxattr(ROOT_FD, XATTR, value, sizeof value), root_path);
    record(-1, 0, ".", &st, n, value);
  }
  if (S_ISDIR(st.mode)) walk(ROOT_FD, ".");
  flush_pending();
  out_flush(&std_out);
  if (worker != 0) return 0;
  int result = wait_workers();
  if (result == 0) {
    out_line(&std_out, "done\n");
    out_flush(&std_out);
  }
  return result;
}

/* ---- restore ---- */

static int do_restore(bool use_original, const char *under) {
  struct entry_stat root_st;
  if (stat_entry(ROOT_FD, "", AT_EMPTY_PATH, &root_st) != 0) die("fd 3 (the root) is not open: %s", strerror(errno));
  size_t under_len = under ? strlen(under) : 0;
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  char *cur_dir = xstrdup(".");
  int cur_fd = ROOT_FD;
  bool cur_ok = true;
  unsigned long restored = 0;
  if (fchdir(ROOT_FD) != 0 && errno != ENOTDIR) die("cannot enter the root: %s", strerror(errno));
  while ((len = getline(&line, &cap, stdin)) > 0) {
    /* A last line without its newline was torn by a crash: its file was not labeled (records are synced first). */
    if (line[len - 1] != '\n') break;
    line[len - 1] = '\0';
    char *fields[5];
    char *p = line;
    for (int i = 0; i < 4; i++) {
      char *sp = strchr(p, ' ');
      if (!sp) die("malformed log record: %.60s", line);
      *sp = '\0';
      fields[i] = p;
      p = sp + 1;
    }
    fields[4] = p;
    const char *rel = fields[4], *birth = fields[1];
    if (under && strcmp(under, ".") != 0 && !(strncmp(rel, under, under_len) == 0 && (rel[under_len] == '/' || rel[under_len] == '\0'))) continue;
    char *end;
    errno = 0;
    unsigned long long ino = strtoull(fields[0], &end, 10);
    if (errno != 0 || *end != '\0') die("malformed log record: %.60s", line);
    const char *hex = use_original || strcmp(fields[3], "=") == 0 ? fields[2] : fields[3];
    unsigned char value[MAX_VALUE];
    ssize_t n = from_hex(hex, value, sizeof value);
    if (strcmp(rel, ".") == 0) {
      if ((unsigned long long)root_st.ino != ino || !same_birth(root_st.birth, birth)) { skip(rel, "replaced"); continue; }
      int r = n < 0 ? fremovexattr(ROOT_FD, XATTR) : fsetxattr(ROOT_FD, XATTR, value, (size_t)n, 0);
      if (r != 0 && !(n < 0 && errno == ENODATA)) die("cannot restore the root's label: %s", strerror(errno));
      restored++;
      continue;
    }
    /* Enter the record's directory from the root, one component at a time, never through a symlink. */
    const char *slash = strrchr(rel, '/');
    char *dir_rel = slash ? strndup(rel, (size_t)(slash - rel)) : xstrdup(".");
    const char *name = slash ? slash + 1 : rel;
    if (!dir_rel) die("out of memory");
    if (strcmp(dir_rel, cur_dir) != 0) {
      if (cur_fd != ROOT_FD) close(cur_fd);
      cur_fd = ROOT_FD;
      cur_ok = true;
      if (strcmp(dir_rel, ".") != 0) {
        char *copy = xstrdup(dir_rel), *save = NULL;
        for (char *part = strtok_r(copy, "/", &save); part && cur_ok; part = strtok_r(NULL, "/", &save)) {
          int next = openat(cur_fd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
          if (cur_fd != ROOT_FD) close(cur_fd);
          cur_fd = next < 0 ? ROOT_FD : next;
          cur_ok = next >= 0;
        }
        free(copy);
      }
      free(cur_dir);
      cur_dir = dir_rel;
      if (cur_ok && fchdir(cur_fd) != 0) die("cannot enter %s: %s", cur_dir, strerror(errno));
    } else {
      free(dir_rel);
    }
    struct entry_stat st;
    if (!cur_ok || stat_entry(cur_fd, name, 0, &st) != 0) { skip(rel, "gone"); continue; }
    if ((unsigned long long)st.ino != ino || !same_birth(st.birth, birth) || st.dev != root_st.dev || S_ISLNK(st.mode)) { skip(rel, "replaced"); continue; }
    int r = n < 0 ? lremovexattr(name, XATTR) : lsetxattr(name, XATTR, value, (size_t)n, 0);
    if (r != 0 && !(n < 0 && errno == ENODATA)) die("cannot restore the label of %s: %s", rel, strerror(errno));
    if (++restored % PROGRESS_EVERY == 0) {
      out_line(&std_out, "progress %d\n", PROGRESS_EVERY);
      out_flush(&std_out);
    }
  }
  free(line);
  free(cur_dir);
  out_line(&std_out, "restored %lu\n", restored);
  out_flush(&std_out);
  return 0;
}

static void usage(void) {
  die("usage: svirt-label-tree label --label LABEL --uid UID [--any-owner] [--pool REL]... [--in-pool POOL] --root-path PATH\n"
      "       svirt-label-tree restore --use original|before [--under REL] --root-path PATH\n"
      "       svirt-label-tree pipe-size BYTES\n"
      "       svirt-label-tree send-buffer BYTES");
}

/*
 * `serve`: the helper's one-file label calls, without a process each (a fork of the helper costs
 * milliseconds, several times per VM start). One request a line on stdin, operands in hex (so no byte of
 * a path or a value can be mistaken for the line's format); one answer a line on stdout, in order:
 *   get PATH, lget PATH     "ok VALUE" | "none" (no attribute)      lget does not follow a final symlink
 *   set PATH VALUE          "ok"                                    follows it (the helper names opened
 *   remove PATH             "ok" | "none"                            files /proc/PID/fd/N)
 *   mkfifo PATH             "ok"                                    mode 0600, the caller chowns it
 * or "err ERRNO". It ends at the end of its input.
 */
static int do_serve(void) {
  umask(077);
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  unsigned char value[MAX_VALUE];
  char target[PATH_MAX];
  while ((len = getline(&line, &cap, stdin)) > 0) {
    if (line[len - 1] == '\n') line[len - 1] = '\0';
    char *arg = strchr(line, ' ');
    if (!arg) die("malformed request: %.40s", line);
    *arg++ = '\0';
    char *val = strchr(arg, ' ');
    if (val) *val++ = '\0';
    ssize_t n = from_hex(arg, (unsigned char *)target, sizeof target - 1);
    if (n <= 0 || memchr(target, '\0', (size_t)n)) die("malformed path in request: %.40s", arg);
    target[n] = '\0';
    const char *op = line;
    int r;
    if (strcmp(op, "get") == 0 || strcmp(op, "lget") == 0) {
      ssize_t got = op[0] == 'l' ? lgetxattr(target, XATTR, value, sizeof value) : getxattr(target, XATTR, value, sizeof value);
      if (got >= 0) {
        char *hex = to_hex(value, got);
        printf("ok %s\n", hex);
        free(hex);
      } else if (errno == ENODATA) puts("none");
      else printf("err %d\n", errno);
    } else if (strcmp(op, "set") == 0) {
      ssize_t m = val ? from_hex(val, value, sizeof value) : -1;
      if (m <= 0) die("malformed value in request");
      r = setxattr(target, XATTR, value, (size_t)m, 0);
      if (r == 0) puts("ok");
      else printf("err %d\n", errno);
    } else if (strcmp(op, "remove") == 0) {
      r = removexattr(target, XATTR);
      if (r == 0) puts("ok");
      else if (errno == ENODATA) puts("none");
      else printf("err %d\n", errno);
    } else if (strcmp(op, "mkfifo") == 0) {
      r = mkfifo(target, 0600);
      if (r == 0) puts("ok");
      else printf("err %d\n", errno);
    } else die("unknown request: %.40s", op);
    if (fflush(stdout) != 0) finish(1);
  }
  free(line);
  return 0;
}


/*
 * The one-call modes (pipe-size, send-buffer) work on fd 3, not stdin: a parent spawning through libuv (the
 * keeper) would have fds 0-2 set blocking in the child, and that flag belongs to the open file the two share.
 */
#define TARGET_FD 3

/* A positive byte count that fits an int (pipe-size, send-buffer). */
static int byte_count(const char *text) {
  char *end;
  errno = 0;
  unsigned long bytes = strtoul(text, &end, 10);
  if (errno != 0 || *end != '\0' || end == text || bytes == 0 || bytes > INT_MAX) usage();
  return (int)bytes;
}

/*
 * `pipe-size`: Node has no fcntl, and a serial line's FIFO holds 64 KiB by default. A larger pipe keeps
 * more of a guest's output while its reader is busy, and lets the reader take it in fewer, larger reads
 * (per read, the keeper's interpreted JavaScript costs more than the bytes). The capacity belongs to the
 * open pipe, so the reader sets it on its own fd, handed over as fd 3.
 */
static int do_pipe_size(const char *text) {
  int bytes = byte_count(text);
  int got = fcntl(TARGET_FD, F_SETPIPE_SZ, bytes);
  if (got < 0) die("pipe-size: %s", strerror(errno));
  printf("%d\n", got);
  return 0;
}

/*
 * `send-buffer`: Node has no setsockopt for SO_SNDBUF either. The console keeper's viewer sockets are
 * where a flood of guest output waits for a viewer; with the default buffer (about 200 KiB) the keeper and
 * the viewer wake each other several times per MiB (bench:console: 1 MiB moved 14 % more a second, with
 * less keeper CPU). The kernel doubles BYTES and caps it at net.core.wmem_max (no SO_SNDBUFFORCE: the
 * keeper needs no capability for this). The socket is fd 3; prints the buffer it got.
 */
static int do_send_buffer(const char *text) {
  int bytes = byte_count(text);
  if (setsockopt(TARGET_FD, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes) != 0) die("send-buffer: %s", strerror(errno));
  int got = 0;
  socklen_t len = sizeof got;
  if (getsockopt(TARGET_FD, SOL_SOCKET, SO_SNDBUF, &got, &len) != 0) die("send-buffer: %s", strerror(errno));
  printf("%d\n", got);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) usage();
  if (argc == 2 && strcmp(argv[1], "serve") == 0) return do_serve();
  if (argc == 3 && strcmp(argv[1], "pipe-size") == 0) return do_pipe_size(argv[2]);
  if (argc == 3 && strcmp(argv[1], "send-buffer") == 0) return do_send_buffer(argv[2]);
  const char *mode = argv[1];
  const char *use = NULL, *under = NULL, *uid_text = NULL;
  pools = xmalloc((size_t)argc * sizeof *pools);
  for (int i = 2; i < argc; i++) {
    const char *opt = argv[i];
    if (strcmp(opt, "--any-owner") == 0) { any_owner = true; continue; }
    if (i + 1 >= argc) usage();
    const char *val = argv[++i];
    if (strcmp(opt, "--label") == 0) label = val;
    else if (strcmp(opt, "--uid") == 0) uid_text = val;
    else if (strcmp(opt, "--pool") == 0) pools[n_pools++] = (char *)val;
    else if (strcmp(opt, "--in-pool") == 0) pool_path = val;
    else if (strcmp(opt, "--root-path") == 0) root_path = val;
    else if (strcmp(opt, "--use") == 0) use = val;
    else if (strcmp(opt, "--under") == 0) under = val;
    else usage();
  }
  if (!root_path) usage();
  if (strcmp(mode, "restore") == 0) {
    if (!use || (strcmp(use, "original") != 0 && strcmp(use, "before") != 0)) usage();
    return do_restore(strcmp(use, "original") == 0, under);
  }
  if (strcmp(mode, "label") != 0 || !label || !uid_text) usage();
  for (const unsigned char *p = (const unsigned char *)label; *p; p++)
    if (*p <= 0x20 || *p >= 0x7f) die("the label must be printable ASCII without spaces");
  label_len = strlen(label) + 1;
  char *end;
  errno = 0;
  unsigned long uid = strtoul(uid_text, &end, 10);
  if (errno != 0 || *end != '\0' || end == uid_text) usage();
  owner_uid = (uid_t)uid;
  check_root_path();
  return do_label();
}
