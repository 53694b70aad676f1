package dev.vfiovm.node.kernel;

import static org.assertj.core.api.Assertions.assertThat;

import dev.vfiovm.node.SeccompPolicy;
import dev.vfiovm.testing.Prerequisites;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The filter libseccomp builds from {@link SeccompPolicy}, loaded by bubblewrap as the node agent does it
 * ({@code --seccomp FD}), really refuses what the policy says (EPERM; clone3 ENOSYS) and leaves normal work
 * alone: threads (glibc falls back from clone3 to clone), fork, reading limits, files. The same program
 * without the filter, in the same user namespace holding every capability there, succeeds at each refused
 * call: the refusals are the filter's, not the sandbox's.
 */
class SeccompFilterKernelIT {
  static final String PROGRAM = """
      #define _GNU_SOURCE
      #include <errno.h>
      #include <fcntl.h>
      #include <pthread.h>
      #include <sched.h>
      #include <stdio.h>
      #include <string.h>
      #include <sys/mount.h>
      #include <sys/resource.h>
      #include <sys/syscall.h>
      #include <sys/wait.h>
      #include <unistd.h>
      static void say(const char *n, int ok) { printf("%s %s\\n", n, ok ? "OK" : strerrorname_np(errno)); }
      static void *thread(void *a) { return a; }
      int main(void) {
        say("mount", mount("none", "/mnt", "tmpfs", 0, NULL) == 0);
        say("unshare-mount", unshare(CLONE_NEWNS) == 0);
        struct rlimit rl; say("getrlimit", getrlimit(RLIMIT_NOFILE, &rl) == 0);
        say("setrlimit", setrlimit(RLIMIT_NOFILE, &rl) == 0);
        say("clone3", syscall(SYS_clone3, NULL, 0) == 0);
        pthread_t t; errno = pthread_create(&t, NULL, thread, NULL); say("pthread_create", errno == 0);
        if (errno == 0) pthread_join(t, NULL);
        pid_t p = fork(); if (p == 0) _exit(7);
        int st = 0; say("fork", p > 0 && waitpid(p, &st, 0) == p && WEXITSTATUS(st) == 7);
        int fd = open("/tmp/f", O_CREAT | O_WRONLY, 0600); say("write-tmp", fd >= 0 && write(fd, "x", 1) == 1);
        say("unshare-user", unshare(CLONE_NEWUSER) == 0);
        return 0;
      }
      """;

  static Path bwrap = Path.of("/usr/bin/bwrap");

  @TempDir Path dir;

  @BeforeAll
  static void prerequisites() throws Exception {
    Prerequisites.require(Files.isExecutable(bwrap), "bubblewrap (apt-get install bubblewrap)");
    Prerequisites.require(new ProcessBuilder("gcc", "--version").start().waitFor() == 0, "gcc");
    Prerequisites.require(
        Files.exists(Path.of("/usr/lib/x86_64-linux-gnu/libseccomp.so.2")), "libseccomp2 (apt-get install libseccomp2)");
  }

  Map<String, String> run(Path program, Path filter) throws IOException, InterruptedException {
    String seccomp = filter == null ? "" : " --seccomp 3 3<" + filter;
    Process p = new ProcessBuilder("/bin/sh", "-c",
            "exec " + bwrap + " --unshare-user --uid 0 --gid 0 --ro-bind / / --tmpfs /mnt --tmpfs /tmp --ro-bind " + dir + " " + dir + " --dev /dev"
                + seccomp + " -- " + program)
        .redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes());
    assertThat(p.waitFor(30, TimeUnit.SECONDS)).isTrue();
    assertThat(p.exitValue()).as(out).isZero();
    Map<String, String> results = new LinkedHashMap<>();
    out.lines().map(l -> l.split(" ")).filter(w -> w.length == 2).forEach(w -> results.put(w[0], w[1]));
    return results;
  }

  @Test
  void theExportedFilterRefusesMountUnshareSetrlimitClone3AndAllowsNormalWork() throws Exception {
    Path src = dir.resolve("p.c");
    Path bin = dir.resolve("p");
    Files.writeString(src, PROGRAM);
    Process cc = new ProcessBuilder("gcc", "-Wall", "-Werror", "-pthread", "-o", bin.toString(), src.toString())
        .redirectErrorStream(true).start();
    String ccOut = new String(cc.getInputStream().readAllBytes());
    assertThat(cc.waitFor()).as(ccOut).isZero();
    int fd = SeccompPolicy.exportBpf();
    Path filter = dir.resolve("filter.bpf");
    try {
      Files.write(filter, Files.readAllBytes(Path.of("/proc/self/fd/" + fd)));
    } finally {
      Kernel.closeQuietly(fd);
    }
    // classic BPF: 8 bytes per instruction, a filter of a few hundred instructions at most (BPF_MAXINSNS 4096)
    assertThat(Files.size(filter) % 8).isZero();
    assertThat(Files.size(filter) / 8).isBetween(20L, 4096L);
    Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwxr-xr-x"));

    Map<String, String> without = run(bin, null);
    assertThat(without).containsEntry("mount", "OK").containsEntry("unshare-mount", "OK")
        .containsEntry("setrlimit", "OK").containsEntry("unshare-user", "OK");
    assertThat(without.get("clone3")).isNotIn("OK", "ENOSYS");

    Map<String, String> with = run(bin, filter);
    assertThat(with).containsEntry("mount", "EPERM").containsEntry("unshare-mount", "EPERM")
        .containsEntry("setrlimit", "EPERM").containsEntry("clone3", "ENOSYS").containsEntry("unshare-user", "EPERM");
    assertThat(with).containsEntry("getrlimit", "OK").containsEntry("pthread_create", "OK")
        .containsEntry("fork", "OK").containsEntry("write-tmp", "OK");
    assertThat(with.keySet()).containsAll(List.of("mount", "unshare-mount", "getrlimit", "setrlimit", "clone3",
        "pthread_create", "fork", "write-tmp", "unshare-user"));
  }
}
