package dev.vfiovm.node;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.vfiovm.node.SandboxPlan.HostEntry;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

class SandboxPlanTest {
  static final List<HostEntry> MERGED_USR =
      List.of(HostEntry.dir("/usr"), HostEntry.symlink("/bin", "usr/bin"), HostEntry.symlink("/lib", "usr/lib"),
          HostEntry.symlink("/lib64", "usr/lib64"), HostEntry.symlink("/sbin", "usr/sbin"));

  static SandboxPlan plan(List<String> readOnly) {
    return SandboxPlan.of(new SandboxPlan.Spec("/usr/bin/bwrap", MERGED_USR, readOnly, 9));
  }

  /** Consecutive (option, arg...) groups of a bwrap argv, as strings "opt a b". */
  static List<String> groups(List<String> argv) {
    List<String> out = new ArrayList<>();
    for (int i = 1; i < argv.size(); i++) {
      String a = argv.get(i);
      int n = switch (a) {
        case "--ro-bind", "--symlink", "--bind" -> 2;
        case "--uid", "--gid", "--hostname", "--proc", "--dev", "--tmpfs", "--cap-drop", "--seccomp", "--chdir" -> 1;
        default -> 0;
      };
      out.add(String.join(" ", argv.subList(i, i + 1 + n)));
      i += n;
    }
    return out;
  }

  @Test
  void everyNamespaceNoCapabilityNoFurtherUserNamespaceDiesWithTheAgentOwnSession() {
    List<String> g = groups(plan(List.of()).argv());
    assertThat(plan(List.of()).argv().get(0)).isEqualTo("/usr/bin/bwrap");
    assertThat(g).contains(
        "--unshare-user", "--uid 0", "--gid 0", "--disable-userns", "--unshare-pid", "--unshare-net",
        "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--die-with-parent", "--new-session",
        "--cap-drop ALL", "--proc /proc", "--dev /dev", "--tmpfs /tmp", "--seccomp 9", "--chdir /");
    // never the host's root, /proc, /sys or /dev, never a writable bind, never a shared network
    assertThat(g).noneMatch(s -> s.startsWith("--bind") || s.startsWith("--dev-bind") || s.equals("--share-net"));
    assertThat(g).noneMatch(s -> s.matches("--ro-bind (/|/proc|/sys|/dev|/etc|/run.*|/var.*) .*"));
    assertThat(g.get(g.size() - 1)).isEqualTo("--");
  }

  @Test
  void mergedUsrIsOneReadOnlyBindAndTheTopLevelLinksAreRecreated() {
    SandboxPlan p = plan(List.of());
    List<String> g = groups(p.argv());
    assertThat(g).contains("--ro-bind /usr /usr", "--symlink usr/bin /bin", "--symlink usr/lib /lib",
        "--symlink usr/lib64 /lib64", "--symlink usr/sbin /sbin");
    assertThat(p.visibleHostPaths()).containsExactly("/usr");
    // a host with real /lib directories binds them read-only
    SandboxPlan split = SandboxPlan.of(new SandboxPlan.Spec(
        "/usr/bin/bwrap", List.of(HostEntry.dir("/usr"), HostEntry.dir("/lib"), HostEntry.dir("/lib64")), List.of(), -1));
    assertThat(groups(split.argv())).contains("--ro-bind /lib /lib", "--ro-bind /lib64 /lib64")
        .noneMatch(s -> s.startsWith("--seccomp"));
  }

  @Test
  void exactlyTheVmmsPathsReadOnlyOnceEachParentsCoverChildren() {
    SandboxPlan p = plan(List.of(
        "/opt/vfiovm/qemu10", "/opt/vfiovm/qemu10/usr/share/qemu", "/usr/share/seabios", "/srv/vms/a/bzImage",
        "/srv/vms/a/initrd", "/srv/vms/a/bzImage/", "/etc/java-17-openjdk", "/tmp/vfiovm-e2e/boot/tiny.elf"));
    assertThat(p.visibleHostPaths()).containsExactly(
        "/usr", "/etc/java-17-openjdk", "/opt/vfiovm/qemu10", "/srv/vms/a/bzImage", "/srv/vms/a/initrd",
        "/tmp/vfiovm-e2e/boot/tiny.elf");
    List<String> g = groups(p.argv());
    assertThat(g).contains("--ro-bind /opt/vfiovm/qemu10 /opt/vfiovm/qemu10", "--ro-bind /srv/vms/a/bzImage /srv/vms/a/bzImage");
    assertThat(g).doesNotContain("--ro-bind /usr/share/seabios /usr/share/seabios",
        "--ro-bind /opt/vfiovm/qemu10/usr/share/qemu /opt/vfiovm/qemu10/usr/share/qemu");
    // binds after the tmpfs: a boot file under /tmp is mounted over the sandbox's own /tmp
    assertThat(g.indexOf("--tmpfs /tmp")).isLessThan(g.indexOf("--ro-bind /tmp/vfiovm-e2e/boot/tiny.elf /tmp/vfiovm-e2e/boot/tiny.elf"));
    assertThat(p.summary(true)).contains("/opt/vfiovm/qemu10", "seccomp", "pid", "net");
  }

  @Test
  void credentialsHostProcSysDevAndWholeSystemDirectoriesAreRefused() {
    for (String bad : List.of("/", "/var/run/secrets/kubernetes.io/serviceaccount", "/run/secrets", "/run", "/var",
        "/proc/1", "/sys/bus/pci", "/dev/vfio", "/etc", "/tmp", "/home", "/root", "/var/lib/kubelet/pods/x",
        "/var/lib")) {
      assertThatThrownBy(() -> plan(List.of(bad))).as(bad)
          .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("visible to the VM process");
    }
    assertThatThrownBy(() -> plan(List.of("relative/x"))).hasMessageContaining("not absolute");
  }

  @Test
  void noPathOutsideTheListIsVisible() {
    SandboxPlan p = plan(List.of("/opt/probe"));
    List<String> sources = new ArrayList<>();
    List<String> argv = p.argv();
    for (int i = 0; i < argv.size(); i++) {
      if (argv.get(i).equals("--ro-bind")) {
        sources.add(argv.get(i + 1));
      }
    }
    assertThat(sources).containsExactly("/usr", "/opt/probe");
  }
}
