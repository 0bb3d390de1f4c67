/* Hostile and measuring programs for the sandbox tests; argv[1] picks one. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static double cpu_now(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void *spin(void *arg) {
    (void)arg;
    volatile unsigned long x = 0;
    for (;;) x++;
    return NULL;
}

static void *burn(void *arg) {
    /* Burn this thread's share of CPU, as the kernel counts it per thread. */
    double until = *(double *)arg;
    struct timespec ts;
    volatile unsigned long x = 0;
    do {
        for (int i = 0; i < 100000; i++) x++;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    } while (ts.tv_sec + ts.tv_nsec / 1e9 < until);
    return NULL;
}

static void *eat(void *arg) {
    size_t n = (size_t)arg;
    for (;;) {
        char *p = malloc(n);
        if (!p) continue;
        memset(p, 1, n);
    }
    return NULL;
}

static int depth(int n) {
    volatile char pad[1024];
    pad[0] = (char)n;
    if (n == 0) return pad[0];
    return depth(n - 1) + pad[0];
}

static const char *err(long r) { return r == -1 ? strerrorname_np(errno) : "OK"; }

int main(int argc, char **argv) {
    if (argc < 2) return 100;
    const char *m = argv[1];
    if (!strcmp(m, "forkbomb")) {
        for (;;) fork();
    } else if (!strcmp(m, "membomb")) {
        eat((void *)(1 << 20));
    } else if (!strcmp(m, "membomb-threads")) {
        pthread_t t[4];
        for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, eat, (void *)(1 << 20));
        pthread_join(t[0], NULL);
    } else if (!strcmp(m, "spin")) {
        spin(NULL);
    } else if (!strcmp(m, "spin4")) {
        pthread_t t[4];
        for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, spin, NULL);
        pthread_join(t[0], NULL);
    } else if (!strcmp(m, "cpu4")) {
        double each = atof(argv[2]);
        pthread_t t[4];
        for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, burn, &each);
        for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    } else if (!strcmp(m, "cpu")) {
        /* Burn exactly argv[2] seconds of CPU as the kernel counts it. */
        double until = atof(argv[2]);
        volatile unsigned long x = 0;
        while (cpu_now() < until) for (int i = 0; i < 100000; i++) x++;
    } else if (!strcmp(m, "touch")) {
        size_t n = (size_t)atol(argv[2]) << 20;
        char *p = malloc(n);
        memset(p, 7, n);
        printf("%d\n", p[n - 1]);
    } else if (!strcmp(m, "recurse")) {
        printf("%d\n", depth(atoi(argv[2])));
    } else if (!strcmp(m, "flood")) {
        int fd = atoi(argv[2]);
        static char buf[65536];
        memset(buf, 'x', sizeof buf);
        for (;;) if (write(fd, buf, sizeof buf) < 0) return 3;
    } else if (!strcmp(m, "syscalls")) {
        printf("ptrace=%s\n", err(ptrace(PTRACE_TRACEME, 0, 0, 0)));
        printf("mount=%s\n", err(mount("none", "/tmp", "tmpfs", 0, NULL)));
        printf("unshare=%s\n", err(unshare(CLONE_NEWUSER)));
        printf("unshare_ns=%s\n", err(unshare(CLONE_NEWNS)));
        /* The one unshare the filter lets through (the keeper needs it);
           the kernel must still refuse it to an unprivileged program. */
        printf("unshare_ipc=%s\n", err(unshare(CLONE_NEWIPC)));
        /* x32 numbers (bit 30) of a denied call. A kernel without x32
           answers ENOSYS by itself; with x32, only the filter does. */
        printf("x32_unshare=%s\n", err(syscall(0x40000000L | SYS_unshare, CLONE_NEWNS)));
        printf("reboot=%s\n", err(reboot(RB_AUTOBOOT)));
        printf("keyctl=%s\n", err(syscall(SYS_keyctl, 0, 0, 0, 0, 0)));
        printf("bpf=%s\n", err(syscall(SYS_bpf, 0, NULL, 0)));
        printf("perf=%s\n", err(syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0)));
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        printf("io_uring=%s\n", err(syscall(SYS_io_uring_setup, 4, &p)));
        printf("clone3=%s\n", err(syscall(SYS_clone3, NULL, 0)));
        printf("clone_newpid=%s\n", err(syscall(SYS_clone, CLONE_NEWPID | SIGCHLD, 0, 0, 0, 0)));
        char c = 'x';
        printf("tiocsti=%s\n", err(ioctl(0, TIOCSTI, &c)));
        printf("tiocsti_high=%s\n", err(syscall(SYS_ioctl, 0, 0x100000000UL | TIOCSTI, &c)));
        struct iovec l = {&c, 1}, r = {&c, 1};
        printf("process_vm_readv=%s\n", err(process_vm_readv(1, &l, 1, &r, 1, 0)));
        printf("setuid0=%s\n", err(setuid(0)));
        printf("chroot=%s\n", err(chroot("/tmp")));
        /* A normal clone must still work. */
        pid_t pid = fork();
        if (pid == 0) _exit(0);
        printf("fork=%s\n", pid > 0 ? "OK" : strerrorname_np(errno));
    } else if (!strcmp(m, "files")) {
        int n = 0;
        while (open("/dev/null", O_RDONLY) >= 0) n++;
        printf("%d %s\n", n, strerrorname_np(errno));
    } else if (!strcmp(m, "daemon")) {
        if (fork() == 0) {
            setsid();
            if (fork() == 0) {
                close(0); close(1); close(2);
                for (;;) sleep(1);
            }
            _exit(0);
        }
        usleep(100000);
        printf("parent done\n");
    } else if (!strcmp(m, "abort")) {
        abort();
    } else if (!strcmp(m, "segv")) {
        volatile int *p = NULL;
        *p = 1;
    } else if (!strcmp(m, "exit")) {
        return atoi(argv[2]);
    }
    return 0;
}
