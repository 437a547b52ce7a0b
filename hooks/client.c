/* aismm hook client: hand a git hook's work to a resident `aismm serve` in a few milliseconds.
 *
 *   aismm-hook HOOK PYTHON      (HOOK: pre-receive | post-receive; stdin: git's ref lines)
 *
 * It reads the ref lines, finds <hub>/run/aismm.sock next to the repository (GIT_DIR's parent
 * or grandparent), sends one raw request and prints the server's lines for this push only.
 * The same fail-safe rule as the Python client: no server (no socket, or nobody listening) ->
 * the work is done in-process by `PYTHON -m aismm.hook HOOK` with the same stdin; a server that
 * accepted the request but does not answer -> pre-receive refuses the push (fail closed),
 * post-receive says the push landed and how to finish. The server has 15 minutes to answer
 * (AISMM_HOOK_TIMEOUT=<seconds> changes that).
 *
 * Request:  "AISMM/1 <hook>\n" "git_dir=<path>\n" "object_dir=<path>\n" "pusher=<id>\n"
 *           "length=<n>\n" "\n" <n bytes of stdin>
 * Response: "<exit code>\n" then the lines for this pusher, until the server closes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define HOOK_MAX_INPUT (16 << 20)
#define ANSWER_TIMEOUT_MS (15 * 60 * 1000)

static char *slurp(size_t *size) {
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (buf == NULL) return NULL;
        if (len == cap) {
            if (cap >= HOOK_MAX_INPUT) { free(buf); return NULL; }
            cap *= 2;
            buf = realloc(buf, cap);
            continue;
        }
        ssize_t got = read(0, buf + len, cap - len);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) { free(buf); return NULL; }
        if (got == 0) break;
        len += (size_t)got;
    }
    *size = len;
    return buf;
}

static int send_all(int fd, const char *data, size_t len) {
    while (len > 0) {
        ssize_t sent = send(fd, data, len, MSG_NOSIGNAL);
        if (sent < 0 && errno == EINTR) continue;
        if (sent <= 0) return -1;
        data += sent;
        len -= (size_t)sent;
    }
    return 0;
}

/* A header value the server can take as it is: no control byte (a newline would split it). */
static int clean(const char *value) {
    if (value == NULL) return 1;
    for (const unsigned char *c = (const unsigned char *)value; *c; c++)
        if (*c < 0x20 || *c == 0x7f) return 0;
    return 1;
}

/* Run the in-process Python hook with the same stdin; its exit status is ours. */
static int fallback(const char *hook, const char *python, const char *data, size_t len) {
    int pipefd[2];
    if (pipe(pipefd) != 0) return 1;
    pid_t pid = fork();
    if (pid < 0) return 1;
    if (pid == 0) {
        dup2(pipefd[0], 0);
        close(pipefd[0]);
        close(pipefd[1]);
        execl(python, python, "-m", "aismm.hook", hook, (char *)NULL);
        fprintf(stderr, "aismm: %s: cannot start %s (%s); the push was refused to stay safe\n",
                hook, python, strerror(errno));
        _exit(1);
    }
    close(pipefd[0]);
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(pipefd[1], data + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        off += (size_t)w;
    }
    close(pipefd[1]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

static int refuse(const char *hook, const char *why) {
    if (strcmp(hook, "pre-receive") == 0) {
        fprintf(stderr, "aismm: the hub's server %s; the push was refused to stay safe\n", why);
        return 1;
    }
    fprintf(stderr, "aismm: the hub's server %s; the push landed but was not processed; run "
                    "`aismm process`\n", why);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "aismm: usage: aismm-hook pre-receive|post-receive PYTHON\n");
        return 2;
    }
    const char *hook = argv[1], *python = argv[2];
    size_t len = 0;
    char *data = slurp(&len);
    if (data == NULL) {
        fprintf(stderr, "aismm: %s: cannot read the ref updates; the push was refused\n", hook);
        return 1;
    }
    char git_dir[PATH_MAX];
    const char *env_dir = getenv("GIT_DIR");
    if (realpath(env_dir ? env_dir : ".", git_dir) == NULL) return fallback(hook, python, data, len);
    const char *object_dir = getenv("GIT_OBJECT_DIRECTORY");
    const char *pusher = getenv("AISMM_PUSHER");
    if (pusher == NULL || *pusher == '\0') pusher = getenv("REMOTE_USER");
    if (!clean(git_dir) || !clean(object_dir) || !clean(pusher))
        return fallback(hook, python, data, len);

    /* dirname() may change its argument and return a pointer into it: work on copies */
    char scratch[PATH_MAX], parent[PATH_MAX], grand[PATH_MAX];
    snprintf(scratch, sizeof scratch, "%s", git_dir);
    snprintf(parent, sizeof parent, "%s", dirname(scratch));
    snprintf(scratch, sizeof scratch, "%s", parent);
    snprintf(grand, sizeof grand, "%s", dirname(scratch));
    const char *hubs[2] = {parent, grand};
    for (int i = 0; i < 2; i++) {
        char sock[PATH_MAX], run[PATH_MAX];
        int n = snprintf(sock, sizeof sock, "%s/run/aismm.sock", hubs[i]);
        if (n < 0 || (size_t)n >= sizeof sock) continue;
        if (access(sock, F_OK) != 0) continue;
        /* an address holds 107 bytes: a deeper hub is named through its run folder's fd */
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        int dir = -1;
        if ((size_t)n < sizeof addr.sun_path) {
            memcpy(addr.sun_path, sock, (size_t)n + 1);
        } else {
            snprintf(run, sizeof run, "%s/run", hubs[i]);
            dir = open(run, O_PATH | O_DIRECTORY | O_CLOEXEC);
            if (dir < 0) break;
            snprintf(addr.sun_path, sizeof addr.sun_path, "/proc/self/fd/%d/aismm.sock", dir);
        }
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) { if (dir >= 0) close(dir); break; }
        int joined = connect(fd, (struct sockaddr *)&addr, sizeof addr);
        if (dir >= 0) close(dir);
        if (joined != 0) { close(fd); break; }
        char head[3 * PATH_MAX + 256];
        int hlen = snprintf(head, sizeof head,
                            "AISMM/1 %s\ngit_dir=%s\nobject_dir=%s\npusher=%s\nlength=%zu\n\n",
                            hook, git_dir, object_dir ? object_dir : "", pusher ? pusher : "", len);
        if (hlen < 0 || (size_t)hlen >= sizeof head || send_all(fd, head, (size_t)hlen) != 0
            || send_all(fd, data, len) != 0) {
            close(fd);
            return refuse(hook, "dropped the request");
        }
        shutdown(fd, SHUT_WR);
        /* the answer: "<code>\n" then lines; relay them as they come */
        char buf[1 << 14];
        int code = -1, have_code = 0;
        char first[16];
        size_t flen = 0;
        const char *wait_env = getenv("AISMM_HOOK_TIMEOUT");  /* seconds; for tests */
        int wait_ms = wait_env && atoi(wait_env) > 0 ? atoi(wait_env) * 1000 : ANSWER_TIMEOUT_MS;
        for (;;) {
            struct pollfd p = {.fd = fd, .events = POLLIN};
            int ready = poll(&p, 1, wait_ms);
            if (ready < 0 && errno == EINTR) continue;
            if (ready <= 0) { close(fd); return refuse(hook, "did not answer in time"); }
            ssize_t got = recv(fd, buf, sizeof buf, 0);
            if (got < 0 && errno == EINTR) continue;
            if (got < 0) { close(fd); return refuse(hook, "broke the connection"); }
            if (got == 0) break;
            size_t at = 0;
            while (!have_code && at < (size_t)got) {
                char c = buf[at++];
                if (c == '\n') {
                    first[flen] = '\0';
                    code = atoi(first);
                    have_code = 1;
                } else if (flen < sizeof first - 1) {
                    first[flen++] = c;
                }
            }
            if (at < (size_t)got) fwrite(buf + at, 1, (size_t)got - at, stderr);
        }
        close(fd);
        fflush(stderr);
        free(data);
        if (!have_code) return refuse(hook, "closed without an answer");
        return code;
    }
    int status = fallback(hook, python, data, len);
    free(data);
    return status;
}
