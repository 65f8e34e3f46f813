// Linux headers and calls that Glibc's Swift module leaves out: netlink and packet sockets,
// accept4, CPU affinity, thread names, the load balancer's socket calls, and statfs (cm-snapd's backends).
#include <sys/socket.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/if_packet.h>
#include <linux/if_ether.h>
#include <net/if.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <poll.h>
#include <sys/epoll.h>
#include <netinet/tcp.h>
#include <fcntl.h>
#include <stdbool.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <pthread.h>
#include <sys/vfs.h>
#include <spawn.h>
// posix_spawn_file_actions_addclosefrom_np(3) (glibc 2.34): a child starts with only the
// descriptors given to it, whatever else the daemon has open.
extern int posix_spawn_file_actions_addclosefrom_np(posix_spawn_file_actions_t *actions, int from);
// pipe2(2) likewise (_GNU_SOURCE).
extern int pipe2(int pipefd[2], int flags);
// accept4(2) is declared only under _GNU_SOURCE; glibc has it regardless.
extern int accept4(int sockfd, struct sockaddr *addr, socklen_t *addrlen, int flags);
// pthread_setname_np(3) likewise.
extern int pthread_setname_np(pthread_t thread, const char *name);
// sched_setaffinity(2) and sched_getaffinity(2) likewise (the mask is a plain bit array,
// cpu_set_t's layout).
extern int sched_setaffinity(int pid, unsigned long cpusetsize, const void *mask);
extern int sched_getaffinity(int pid, unsigned long cpusetsize, void *mask);
// cm-lbd's hot path: recvfrom(2) and sendto(2) through syscall(2), without glibc's
// cancellation-point wrappers (the daemons never cancel threads) and the VFS layer read(2) and
// write(2) go through; non-blocking per call, and no SIGPIPE from a peer that went away.
static inline long cm_recv(int fd, void *buf, unsigned long len) {
    return syscall(SYS_recvfrom, fd, buf, len, MSG_DONTWAIT, (void *)0, (void *)0);
}
// `last`: the last bytes before a shutdown(2) or close(2). MSG_MORE then holds back the last
// partial segment, and the FIN that follows goes out in it (tcp_send_fin marks the unsent tail),
// one packet instead of two.
static inline long cm_send(int fd, const void *buf, unsigned long len, bool last) {
    return syscall(SYS_sendto, fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL | (last ? MSG_MORE : 0), (void *)0, 0);
}
