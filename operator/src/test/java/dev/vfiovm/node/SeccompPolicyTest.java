package dev.vfiovm.node;

import static org.assertj.core.api.Assertions.assertThat;

import dev.vfiovm.node.kernel.Seccomp;
import dev.vfiovm.node.kernel.Seccomp.ArgCmp;
import dev.vfiovm.node.kernel.Seccomp.Compare;
import dev.vfiovm.node.kernel.Seccomp.Rule;
import java.util.List;
import org.junit.jupiter.api.Test;

class SeccompPolicyTest {
  static final int EPERM = Seccomp.actErrno(1);
  static final int ENOSYS = Seccomp.actErrno(38);

  static List<Rule> rulesFor(String syscall) {
    return SeccompPolicy.rules().stream().filter(r -> r.syscall().equals(syscall)).toList();
  }

  @Test
  void theBriefsDenyListIsRefusedWithEpermUnconditionally() {
    for (String s : List.of("mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "bpf", "perf_event_open",
        "ptrace", "process_vm_readv", "process_vm_writev", "kexec_load", "kexec_file_load", "init_module",
        "finit_module", "delete_module", "keyctl", "add_key", "request_key", "setrlimit", "iopl", "ioperm", "reboot",
        "swapon", "swapoff", "userfaultfd", "open_by_handle_at", "name_to_handle_at",
        // the new mount API, or mount(2) alone would leave a door open
        "fsopen", "fsmount", "move_mount", "open_tree")) {
      assertThat(rulesFor(s)).as(s).singleElement().isEqualTo(new Rule(s, EPERM, List.of()));
    }
  }

  @Test
  void cloneIsRefusedOnlyWithANamespaceFlagOneRulePerFlag() {
    List<Rule> clone = rulesFor("clone");
    assertThat(clone).hasSize(7).allMatch(r -> r.action() == EPERM && r.args().size() == 1);
    long mask = 0;
    for (Rule r : clone) {
      ArgCmp c = r.args().get(0);
      assertThat(c.arg()).isZero();
      assertThat(c.op()).isEqualTo(Compare.MASKED_EQ);
      assertThat(c.a()).isEqualTo(c.b());
      assertThat(Long.bitCount(c.a())).isEqualTo(1);
      mask |= c.a();
    }
    // CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET; threads (CLONE_VM|CLONE_THREAD|...) match none
    assertThat(mask).isEqualTo(0x7e020000L);
    long threadFlags = 0x00010000L | 0x00000100L | 0x00000200L | 0x00000400L | 0x00000800L | 0x00080000L
        | 0x00100000L | 0x00200000L | 0x01000000L;
    assertThat(threadFlags & mask).isZero();
  }

  @Test
  void clone3IsEnosysSoGlibcFallsBackToClone() {
    assertThat(rulesFor("clone3")).singleElement().isEqualTo(new Rule("clone3", ENOSYS, List.of()));
  }

  @Test
  void prlimit64IsRefusedOnlyWhenSettingALimit() {
    assertThat(rulesFor("prlimit64")).singleElement()
        .isEqualTo(new Rule("prlimit64", EPERM, List.of(new ArgCmp(2, Compare.NE, 0, 0))));
  }

  @Test
  void nothingAVmmNeedsIsDenied() {
    for (String s : List.of("read", "write", "mmap", "ioctl", "execve", "exit_group", "futex", "io_uring_setup",
        "io_uring_register", "memfd_create", "socket", "ppoll", "getrlimit", "wait4", "kill", "setsid")) {
      assertThat(rulesFor(s)).as(s).isEmpty();
    }
    assertThat(SeccompPolicy.rules()).allMatch(r -> r.action() == EPERM || r.action() == ENOSYS);
  }
}
