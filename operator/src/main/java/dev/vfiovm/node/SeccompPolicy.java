package dev.vfiovm.node;

import dev.vfiovm.node.kernel.Seccomp;
import dev.vfiovm.node.kernel.Seccomp.ArgCmp;
import dev.vfiovm.node.kernel.Seccomp.Compare;
import dev.vfiovm.node.kernel.Seccomp.Rule;
import dev.vfiovm.node.kernel.Uapi;
import java.util.ArrayList;
import java.util.List;

/**
 * The seccomp policy of the VM process (every VM process: the io-uring launcher JVM, a --vm-command, and
 * QEMU, which adds its own {@code -sandbox} filter on top). Default allow; a deny list of what a VMM never
 * needs and a hostile one would use to leave its sandbox or its budget. Pure: the rules as data, compiled by
 * libseccomp ({@link Seccomp#exportBpf}) and loaded by bubblewrap ({@code --seccomp FD}) right before the
 * sandboxed command's exec, so it binds the command and everything it starts (filters survive fork and exec,
 * and no_new_privs is set). Documented rule by rule in docs/security.md.
 */
public final class SeccompPolicy {
  private SeccompPolicy() {}

  /** Refused with EPERM, unconditionally. */
  static final List<String> DENIED =
      List.of(
          // file system namespace: the sandbox's mounts are final (bwrap also made them in a user namespace
          // the VM cannot leave); the new mount API too, or mount(2) alone would be a door left open
          "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsmount",
          "fsconfig", "fspick", "mount_setattr",
          // namespaces: no new ones (no regained capabilities), no joining others
          "unshare", "setns",
          // kernel attack surface a VMM does not use
          "bpf", "perf_event_open", "userfaultfd", "kexec_load", "kexec_file_load", "init_module",
          "finit_module", "delete_module", "keyctl", "add_key", "request_key", "iopl", "ioperm", "reboot",
          "swapon", "swapoff", "acct", "open_by_handle_at", "name_to_handle_at",
          // other processes' memory and fds (ptrace rights would be needed; none are left, belt and braces)
          "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "pidfd_getfd", "kcmp",
          // resource limits: set from outside by the agent; the VM cannot change them (setrlimit entirely)
          "setrlimit");

  /** clone(2) flags that create a namespace: refused (EPERM) if any is set. */
  static final List<Long> CLONE_NAMESPACE_FLAGS =
      List.of(
          0x00020000L, // CLONE_NEWNS
          0x02000000L, // CLONE_NEWCGROUP
          0x04000000L, // CLONE_NEWUTS
          0x08000000L, // CLONE_NEWIPC
          0x10000000L, // CLONE_NEWUSER
          0x20000000L, // CLONE_NEWPID
          0x40000000L); // CLONE_NEWNET

  /** The rules, in order. */
  public static List<Rule> rules() {
    List<Rule> rules = new ArrayList<>();
    int eperm = Seccomp.actErrno(Uapi.EPERM);
    for (String s : DENIED) {
      rules.add(new Rule(s, eperm, List.of()));
    }
    for (long flag : CLONE_NAMESPACE_FLAGS) {
      // clone(flags, ...): flags is argument 0 on x86_64; one rule per flag = "any of them"
      rules.add(new Rule("clone", eperm, List.of(new ArgCmp(0, Compare.MASKED_EQ, flag, flag))));
    }
    // clone3 passes its flags in memory, which seccomp cannot read: ENOSYS, so glibc falls back to clone(2)
    rules.add(new Rule("clone3", Seccomp.actErrno(Uapi.ENOSYS), List.of()));
    // prlimit64(pid, resource, new_limit, old_limit): reading is fine, setting (new_limit != NULL) is not;
    // glibc's setrlimit() is this call
    rules.add(new Rule("prlimit64", eperm, List.of(new ArgCmp(2, Compare.NE, 0, 0))));
    return List.copyOf(rules);
  }

  /** The compiled filter as BPF in a fresh fd at offset 0 (for bwrap --seccomp); the caller closes it. */
  public static int exportBpf() {
    return Seccomp.exportBpf(Seccomp.ACT_ALLOW, rules());
  }

  /** One line for reports and logs. */
  static String summary() {
    return "seccomp (vfiovm policy: " + rules().size() + " rules, mount/unshare/setns/bpf/ptrace/setrlimit/"
        + "namespace clone ... refused)";
  }
}
