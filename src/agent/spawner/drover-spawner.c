/*
 * drover-spawner: the cell agent's process starter.
 *
 * Forking costs time in proportion to the forking process's memory: from the agent (a Node
 * process of 100+ MiB) one spawn took 6-8 ms of CPU, from this program well under 1 ms. The
 * agent keeps one of these running and sends it what to start; it forks, reaps and reports.
 *
 * stdin, from the agent: frames of a little-endian u32 length and that many bytes, each a
 * list of NUL-terminated fields:
 *   id, uid, gid ("-1": keep), path, dir ("": keep), log file, argc, argv..., envc, env...
 * stdout, to the agent: one line per event
 *   S <id> <pid>                the child has exec'd
 *   F <id> <errno> <step>       it could not start; step = open-log, chdir, setgid, setuid, exec, fork,
 *                               or request (EINVAL: the frame is not a well-formed request)
 *   X <pid> <code|-> <signal|-> a child exited
 * End of stdin ends this program; its children keep running (a later agent adopts them).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_FRAME (16u << 20)
#define MAX_FIELDS 65536

static char *inbuf;
static size_t inlen, incap;

static void write_all(const char *s, size_t n) {
  while (n > 0) {
    ssize_t w = write(1, s, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) exit(0); /* the agent is gone */
    s += w;
    n -= (size_t)w;
  }
}

static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void report(const char *fmt, ...) {
  char line[128];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  write_all(line, (size_t)n);
}

/* The child's failure, sent up the close-on-exec pipe: which step failed, and errno. */
struct failure {
  int err;
  int step;
};
static const char *const STEPS[] = {"open-log", "chdir", "setgid", "setuid", "exec", "fork", "request"};
enum { STEP_LOG, STEP_CHDIR, STEP_SETGID, STEP_SETUID, STEP_EXEC, STEP_FORK, STEP_REQUEST };

static void fail_child(int pipe_fd, int step) {
  struct failure f = {errno, step};
  (void)!write(pipe_fd, &f, sizeof f);
  _exit(127);
}

/* execve along the PATH of the child's own environment, as Node's spawn does. */
static void exec_in_path(const char *file, char **argv, char **envp) {
  if (strchr(file, '/')) {
    execve(file, argv, envp);
    return;
  }
  const char *path = "/usr/local/bin:/usr/bin:/bin";
  for (char **e = envp; *e; e++)
    if (strncmp(*e, "PATH=", 5) == 0) path = *e + 5;
  int saw_eacces = 0;
  char full[4096];
  for (const char *p = path;; p++) {
    const char *end = strchrnul(p, ':');
    int n = snprintf(full, sizeof full, "%.*s%s%s", (int)(end - p), p, end == p ? "" : "/", file);
    if (n > 0 && (size_t)n < sizeof full) {
      execve(full, argv, envp);
      if (errno == EACCES) saw_eacces = 1;
    }
    if (*end == '\0') break;
    p = end;
  }
  errno = saw_eacces ? EACCES : ENOENT;
}

static void child(int pipe_fd, long uid, long gid, const char *path, const char *dir, const char *log, char **argv, char **envp) {
  /* A new session and process group (pgid = pid): the agent signals the whole tree. */
  setsid();
  /* Opened close-on-exec: only the dup2 copies (0, 1, 2) reach the program. */
  int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd >= 0) dup2(null_fd, 0);
  int log_fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (log_fd < 0) fail_child(pipe_fd, STEP_LOG);
  dup2(log_fd, 1);
  dup2(log_fd, 2);
  if (*dir && chdir(dir) != 0) fail_child(pipe_fd, STEP_CHDIR);
  if (gid >= 0 && (setgroups(0, NULL) != 0 || setgid((gid_t)gid) != 0)) fail_child(pipe_fd, STEP_SETGID);
  if (uid >= 0 && setuid((uid_t)uid) != 0) fail_child(pipe_fd, STEP_SETUID);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  exec_in_path(path, argv, envp);
  fail_child(pipe_fd, STEP_EXEC);
}

/* Splits a frame into its fields; 0 when it is malformed. */
static size_t fields_of(char *frame, size_t len, char **fields) {
  size_t n = 0;
  for (size_t at = 0; at < len; n++) {
    if (n == MAX_FIELDS) return 0;
    char *nul = memchr(frame + at, '\0', len - at);
    if (!nul) return 0;
    fields[n] = frame + at;
    at = (size_t)(nul - frame) + 1;
  }
  return n;
}

/*
 * Children between fork and exec, with the close-on-exec pipe that tells how the exec went.
 * The next fork does not wait for it: the execs of a burst of starts run side by side.
 */
#define MAX_LAUNCHING 1024
static struct launching {
  unsigned long id;
  pid_t pid;
  int pipe_fd; /* -1 once read */
  int failed;  /* F sent: its exit is not reported */
} launching[MAX_LAUNCHING];
static size_t n_launching;

static void forget(size_t i) { launching[i] = launching[--n_launching]; }

/* Reads the outcome of entry i's exec, once its pipe is readable or the child is gone. */
static void settle(size_t i) {
  struct launching *l = &launching[i];
  struct failure fl;
  ssize_t r;
  do r = read(l->pipe_fd, &fl, sizeof fl);
  while (r < 0 && errno == EINTR);
  close(l->pipe_fd);
  l->pipe_fd = -1;
  if (r == (ssize_t)sizeof fl) {
    report("F %lu %d %s\n", l->id, fl.err, STEPS[fl.step]);
    l->failed = 1; /* kept until reaped, so that no exit is reported for it */
  } else {
    /* Closed unread: the exec succeeded. */
    report("S %lu %d\n", l->id, (int)l->pid);
    forget(i);
  }
}

/* Whether fields f[0..n) are a request: the fixed fields, argc >= 1 arguments, envc variables. */
static int well_formed(char **f, size_t n) {
  if (n < 8) return 0;
  size_t argc = strtoul(f[6], NULL, 10);
  if (argc < 1 || argc >= n - 7) return 0;
  return strtoul(f[7 + argc], NULL, 10) == n - 8 - argc;
}

static void spawn_frame(char *frame, size_t len) {
  static char *f[MAX_FIELDS + 1];
  size_t n = fields_of(frame, len, f);
  unsigned long id = n > 0 ? strtoul(f[0], NULL, 10) : 0;
  if (!well_formed(f, n)) {
    /* Answered, so that the start does not wait for ever; a frame with no id cannot be. */
    if (n > 0) report("F %lu %d %s\n", id, EINVAL, STEPS[STEP_REQUEST]);
    return;
  }
  size_t argc = strtoul(f[6], NULL, 10);
  size_t envc = n - 8 - argc;
  char **argv = &f[7];
  char **envp = &f[8 + argc];
  /* Both lists end in NULL: argv's overwrites the env count, already read. */
  f[8 + argc + envc] = NULL;
  f[7 + argc] = NULL;

  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    report("F %lu %d %s\n", id, errno, STEPS[STEP_FORK]);
    return;
  }
  pid_t pid = fork();
  if (pid == 0) child(pipe_fds[1], strtol(f[1], NULL, 10), strtol(f[2], NULL, 10), f[3], f[4], f[5], argv, envp);
  int fork_errno = errno;
  close(pipe_fds[1]);
  if (pid < 0) {
    close(pipe_fds[0]);
    report("F %lu %d %s\n", id, fork_errno, STEPS[STEP_FORK]);
    return;
  }
  launching[n_launching++] = (struct launching){id, pid, pipe_fds[0], 0};
}

static void read_frames(void) {
  if (incap - inlen < 65536) {
    incap = incap ? incap * 2 : 1 << 20;
    inbuf = realloc(inbuf, incap);
    if (!inbuf) exit(1);
  }
  ssize_t r = read(0, inbuf + inlen, incap - inlen);
  if (r < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (r <= 0) exit(0); /* the agent closed its end: leave the children running */
  inlen += (size_t)r;
  size_t at = 0;
  while (inlen - at >= 4 && n_launching < MAX_LAUNCHING) {
    uint32_t len;
    memcpy(&len, inbuf + at, 4);
    if (len > MAX_FRAME) exit(2);
    if (inlen - at - 4 < len) break;
    spawn_frame(inbuf + at + 4, len);
    at += 4 + len;
  }
  memmove(inbuf, inbuf + at, inlen - at);
  inlen -= at;
}

static void reap(int sig_fd) {
  struct signalfd_siginfo si;
  while (read(sig_fd, &si, sizeof si) == (ssize_t)sizeof si) {}
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    size_t i = 0;
    while (i < n_launching && launching[i].pid != pid) i++;
    if (i < n_launching) {
      /* Its start is reported before its exit; one that never started has no exit. */
      if (launching[i].pipe_fd >= 0) settle(i);
      if (i < n_launching && launching[i].pid == pid && launching[i].failed) {
        forget(i);
        continue;
      }
    }
    if (WIFEXITED(status)) report("X %d %d -\n", (int)pid, WEXITSTATUS(status));
    else if (WIFSIGNALED(status)) report("X %d - %d\n", (int)pid, WTERMSIG(status));
  }
}

int main(void) {
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  int sig_fd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sig_fd < 0) return 1;
  fcntl(0, F_SETFD, FD_CLOEXEC);
  fcntl(1, F_SETFD, FD_CLOEXEC);
  static struct pollfd fds[2 + MAX_LAUNCHING];
  for (;;) {
    /* stdin is read only while there is room for more launching children */
    fds[0] = (struct pollfd){.fd = n_launching < MAX_LAUNCHING ? 0 : -1, .events = POLLIN};
    fds[1] = (struct pollfd){.fd = sig_fd, .events = POLLIN};
    size_t n_watched = n_launching;
    for (size_t i = 0; i < n_watched; i++) fds[2 + i] = (struct pollfd){.fd = launching[i].pipe_fd, .events = POLLIN};
    if (poll(fds, 2 + n_watched, -1) < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    /* Starts first, then exits (each start is reported before its exit), then new requests. */
    for (size_t k = n_watched; k-- > 0;) {
      if (!fds[2 + k].revents) continue;
      for (size_t i = 0; i < n_launching; i++)
        if (launching[i].pipe_fd == fds[2 + k].fd) settle(i);
    }
    if (fds[1].revents) reap(sig_fd);
    if (fds[0].revents) read_frames();
  }
}
