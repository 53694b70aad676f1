package dev.vfiovm.node;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Path;
import org.junit.jupiter.api.Test;

class VmCgroupTest {
  static final String HYBRID_MOUNTS =
      "25 31 0:22 / /sys rw,nosuid - sysfs sysfs rw\n"
          + "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
          + "42 31 0:39 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n";

  @Test
  void theAgentsOwnCgroupUnderTheCgroup2Mount() {
    assertThat(VmCgroup.ownCgroupDir("9:pids:/\n0::/\n", HYBRID_MOUNTS)).contains(Path.of("/sys/fs/cgroup/unified"));
    assertThat(VmCgroup.ownCgroupDir("0::/system.slice/x.service\n1:name=systemd:/x\n", HYBRID_MOUNTS))
        .contains(Path.of("/sys/fs/cgroup/unified/system.slice/x.service"));
  }

  @Test
  void aContainerMountShowingOnlyItsOwnSubtree() {
    String mounts = "700 690 0:30 /kubepods/pod1/c1 /sys/fs/cgroup ro,nosuid - cgroup2 cgroup rw\n";
    assertThat(VmCgroup.ownCgroupDir("0::/kubepods/pod1/c1\n", mounts)).contains(Path.of("/sys/fs/cgroup"));
    assertThat(VmCgroup.ownCgroupDir("0::/kubepods/pod1/c1/sub\n", mounts)).contains(Path.of("/sys/fs/cgroup/sub"));
    // outside what the mount shows, or no cgroup2 at all: none
    assertThat(VmCgroup.ownCgroupDir("0::/elsewhere\n", mounts)).isEmpty();
    assertThat(VmCgroup.ownCgroupDir("0::/\n", "25 31 0:22 / /sys rw - sysfs sysfs rw\n")).isEmpty();
    assertThat(VmCgroup.ownCgroupDir("1:name=systemd:/\n", HYBRID_MOUNTS)).isEmpty();
  }

  @Test
  void oneNamePerVmAndAgent() {
    assertThat(VmCgroup.name("default/vm-1", 4242)).isEqualTo("vfiovm-default.vm-1-4242");
    // a 63-character namespace and a 253-character name still make a file name (<= 255 bytes)
    String longVm = "n".repeat(63) + "/" + "a".repeat(253);
    assertThat(VmCgroup.name(longVm, 4194304)).hasSizeLessThanOrEqualTo(255).startsWith("vfiovm-nnn");
    assertThat(VmCgroup.name(longVm, 1)).isNotEqualTo(VmCgroup.name("n".repeat(63) + "/" + "a".repeat(252) + "b", 1));
  }
}
