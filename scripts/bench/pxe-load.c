/* Load generator for scripts/bench-pxe: the same client drives cm-pxed and dnsmasq.
 *
 *   pxe-load tftp SERVER FILE SIZE CLIENTS BLKSIZE WINDOW
 *       CLIENTS concurrent read transfers of FILE (SIZE bytes expected) with the blksize,
 *       windowsize and tsize options (RFC 2348/2349/7440); prints seconds, MiB/s, failures.
 *   pxe-load dhcp IFACE COUNT INFLIGHT
 *       COUNT simulated clients (distinct MACs, broadcast flag set), each DISCOVER → OFFER →
 *       REQUEST → ACK, INFLIGHT at a time; prints seconds, clients/s, failures.
 *
 * Built by scripts/bench-pxe with the Swift toolchain's clang. Bounded: every wait has a
 * timeout, every loop a count.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* ---- TFTP ---------------------------------------------------------------------------- */

static int tftp_one(const char *server, const char *file, long size, int blksize, int window, int report) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0) return 1;
    int buf = 4 << 20;
    setsockopt(s, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(69)};
    inet_pton(AF_INET, server, &sa.sin_addr);
    char req[512];
    int n = snprintf(req + 2, sizeof req - 2, "%s%coctet%cblksize%c%d%cwindowsize%c%d%ctsize%c0%c", file, 0, 0, 0, blksize, 0, 0, window, 0, 0, 0);
    req[0] = 0; req[1] = 1;
    if (sendto(s, req, n + 2, 0, (struct sockaddr *)&sa, sizeof sa) < 0) { close(s); return 1; }
    unsigned char pkt[65536 + 4];
    struct sockaddr_in peer;
    socklen_t plen = sizeof peer;
    struct pollfd p = {.fd = s, .events = POLLIN};
    if (poll(&p, 1, 5000) <= 0) { close(s); return 1; }
    ssize_t r = recvfrom(s, pkt, sizeof pkt, 0, (struct sockaddr *)&peer, &plen);
    if (r < 4 || pkt[1] != 6) { close(s); return 1; } /* OACK expected */
    /* Use what the server accepted: an option it left out falls back to RFC 1350's value. */
    int got_blk = 512, got_win = 1;
    for (ssize_t i = 2; i < r;) {
        const char *name = (const char *)pkt + i;
        size_t nl = strnlen(name, r - i);
        if (i + (ssize_t)nl + 1 >= r) break;
        const char *value = name + nl + 1;
        size_t vl = strnlen(value, r - i - nl - 1);
        if (strcasecmp(name, "blksize") == 0) got_blk = atoi(value);
        if (strcasecmp(name, "windowsize") == 0) got_win = atoi(value);
        i += nl + vl + 2;
    }
    blksize = got_blk;
    window = got_win;
    if (report) printf("granted blksize %d windowsize %d\n", blksize, window), fflush(stdout);
    if (connect(s, (struct sockaddr *)&peer, sizeof peer) < 0) { close(s); return 1; }
    unsigned char ack[4] = {0, 4, 0, 0};
    send(s, ack, 4, 0);
    long got = 0;
    uint64_t expected = 1;
    int in_window = 0, retries = 0;
    for (;;) {
        if (poll(&p, 1, 1000) <= 0) {
            if (++retries > 10) { close(s); return 1; }
            uint16_t last = (uint16_t)(expected - 1);
            ack[2] = last >> 8; ack[3] = last & 0xff;
            send(s, ack, 4, 0);
            in_window = 0;
            continue;
        }
        r = recv(s, pkt, sizeof pkt, 0);
        if (r < 4 || pkt[1] != 3) { close(s); return 1; }
        uint16_t block = (uint16_t)(pkt[2] << 8 | pkt[3]);
        if (block != (uint16_t)expected) {
            uint16_t last = (uint16_t)(expected - 1);
            ack[2] = last >> 8; ack[3] = last & 0xff;
            send(s, ack, 4, 0);
            in_window = 0;
            continue;
        }
        retries = 0;
        got += r - 4;
        int last = r - 4 < blksize;
        if (++in_window == window || last) {
            ack[2] = block >> 8; ack[3] = block & 0xff;
            send(s, ack, 4, 0);
            in_window = 0;
        }
        expected++;
        if (last) break;
    }
    close(s);
    return got == size ? 0 : 1;
}

static int tftp(int argc, char **argv) {
    if (argc != 8) return 64;
    const char *server = argv[2], *file = argv[3];
    long size = atol(argv[4]);
    int clients = atoi(argv[5]), blksize = atoi(argv[6]), window = atoi(argv[7]);
    double t0 = now();
    for (int i = 0; i < clients; i++) {
        if (fork() == 0) _exit(tftp_one(server, file, size, blksize, window, i == 0));
    }
    int failures = 0, status;
    for (int i = 0; i < clients; i++) {
        wait(&status);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failures++;
    }
    double secs = now() - t0;
    printf("seconds %.3f MiBps %.1f failures %d\n", secs, (double)size * (clients - failures) / secs / 1048576.0, failures);
    return failures ? 1 : 0;
}

/* ---- DHCP ---------------------------------------------------------------------------- */

struct client {
    uint32_t xid;
    unsigned char mac[6];
    int state; /* 0 idle, 1 discovered, 2 requested, 3 done */
    uint32_t offered, server;
    double sent;
};

static int build(unsigned char *b, const struct client *c, int type) {
    memset(b, 0, 300);
    b[0] = 1; b[1] = 1; b[2] = 6;
    memcpy(b + 4, &c->xid, 4);
    b[10] = 0x80; /* broadcast flag: replies reach this host whatever the MAC */
    memcpy(b + 28, c->mac, 6);
    b[236] = 99; b[237] = 130; b[238] = 83; b[239] = 99;
    int i = 240;
    b[i++] = 53; b[i++] = 1; b[i++] = (unsigned char)type;
    if (type == 3) {
        b[i++] = 50; b[i++] = 4; memcpy(b + i, &c->offered, 4); i += 4;
        b[i++] = 54; b[i++] = 4; memcpy(b + i, &c->server, 4); i += 4;
    }
    b[i++] = 55; b[i++] = 3; b[i++] = 1; b[i++] = 3; b[i++] = 6;
    b[i++] = 255;
    return 300;
}

static int option(const unsigned char *b, ssize_t n, int code, const unsigned char **data) {
    ssize_t i = 240;
    while (i + 1 < n) {
        if (b[i] == 0) { i++; continue; }
        if (b[i] == 255) break;
        int len = b[i + 1];
        if (i + 2 + len > n) break;
        if (b[i] == code) { *data = b + i + 2; return len; }
        i += 2 + len;
    }
    return -1;
}

static int dhcp(int argc, char **argv) {
    if (argc != 5) return 64;
    const char *iface = argv[2];
    int count = atoi(argv[3]), inflight = atoi(argv[4]);
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    int one = 1, buf = 8 << 20;
    setsockopt(s, SOL_SOCKET, SO_BROADCAST, &one, sizeof one);
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(s, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    if (setsockopt(s, SOL_SOCKET, SO_BINDTODEVICE, iface, strlen(iface) + 1) < 0) { perror("SO_BINDTODEVICE"); return 1; }
    struct sockaddr_in me = {.sin_family = AF_INET, .sin_port = htons(68)};
    if (bind(s, (struct sockaddr *)&me, sizeof me) < 0) { perror("bind :68"); return 1; }
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(67), .sin_addr.s_addr = INADDR_BROADCAST};
    struct client *c = calloc(count, sizeof *c);
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    for (int i = 0; i < count; i++) {
        c[i].xid = (uint32_t)rand_r(&seed) << 12 ^ (uint32_t)i;
        unsigned char mac[6] = {0x02, 0xcb, (unsigned char)(seed >> 8), (unsigned char)(i >> 16), (unsigned char)(i >> 8), (unsigned char)i};
        memcpy(c[i].mac, mac, 6);
    }
    unsigned char b[1500];
    int next = 0, active = 0, done = 0, failures = 0;
    double t0 = now(), deadline = t0 + 120;
    while (done + failures < count && now() < deadline) {
        while (active < inflight && next < count) {
            build(b, &c[next], 1);
            sendto(s, b, 300, 0, (struct sockaddr *)&to, sizeof to);
            c[next].state = 1; c[next].sent = now();
            next++; active++;
        }
        struct pollfd p = {.fd = s, .events = POLLIN};
        if (poll(&p, 1, 100) > 0) {
            ssize_t n = recv(s, b, sizeof b, 0);
            if (n < 240 || b[0] != 2) continue;
            uint32_t xid;
            memcpy(&xid, b + 4, 4);
            /* The xid's low 12 bits are the client's index mod 4096. */
            int k = (int)(xid & 0xfff);
            int found = -1;
            for (int j = k; j < count; j += 4096) if (c[j].xid == xid) { found = j; break; }
            if (found < 0) continue;
            const unsigned char *d;
            if (option(b, n, 53, &d) != 1) continue;
            if (d[0] == 2 && c[found].state == 1) {
                memcpy(&c[found].offered, b + 16, 4);
                if (option(b, n, 54, &d) == 4) memcpy(&c[found].server, d, 4);
                build(b, &c[found], 3);
                sendto(s, b, 300, 0, (struct sockaddr *)&to, sizeof to);
                c[found].state = 2; c[found].sent = now();
            } else if (d[0] == 5 && c[found].state == 2) {
                c[found].state = 3; done++; active--;
            } else if (d[0] == 6 && c[found].state == 2) {
                c[found].state = 3; failures++; active--;
            }
        }
        /* A client unanswered for 5 s has failed (no retransmission: a lost reply counts). */
        double t = now();
        for (int j = 0; j < next; j++) {
            if ((c[j].state == 1 || c[j].state == 2) && t - c[j].sent > 5.0) { c[j].state = 3; failures++; active--; }
        }
    }
    double secs = now() - t0;
    failures = count - done;
    printf("seconds %.3f clients_per_s %.1f failures %d\n", secs, done / secs, failures);
    return failures ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "tftp") == 0) return tftp(argc, argv);
    if (argc > 1 && strcmp(argv[1], "dhcp") == 0) return dhcp(argc, argv);
    fprintf(stderr, "usage: pxe-load tftp SERVER FILE SIZE CLIENTS BLKSIZE WINDOW | pxe-load dhcp IFACE COUNT INFLIGHT\n");
    return 64;
}
