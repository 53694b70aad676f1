package dev.vfiovm.node.kernel;

import com.sun.jna.Library;
import com.sun.jna.Memory;
import com.sun.jna.Native;
import com.sun.jna.Pointer;
import java.util.List;

/**
 * libseccomp (libseccomp.so.2) through JNA: builds a filter from rules and exports it as a classic BPF
 * program (what {@code bwrap --seccomp FD} loads right before it execs the sandboxed command). The rules are
 * decided elsewhere (dev.vfiovm.node.SeccompPolicy); this only translates them.
 */
public final class Seccomp {
  private Seccomp() {}

  interface LibSeccomp extends Library {
    Pointer seccomp_init(int defAction);

    void seccomp_release(Pointer ctx);

    int seccomp_syscall_resolve_name(String name);

    int seccomp_rule_add_array(Pointer ctx, int action, int syscall, int argCnt, Pointer argArray);

    int seccomp_export_bpf(Pointer ctx, int fd);
  }

  private static volatile LibSeccomp lib;

  private static LibSeccomp lib() {
    if (lib == null) {
      try {
        lib = Native.load("seccomp", LibSeccomp.class);
      } catch (UnsatisfiedLinkError e) {
        throw new KernelException("dlopen(libseccomp.so.2): " + e.getMessage(), Uapi.ENOSYS);
      }
    }
    return lib;
  }

  /** libseccomp's action encodings. */
  public static final int ACT_ALLOW = 0x7fff0000;

  public static int actErrno(int errno) {
    return 0x00050000 | (errno & 0xffff);
  }

  /** enum scmp_compare. */
  public enum Compare {
    NE(1), LT(2), LE(3), EQ(4), GE(5), GT(6), MASKED_EQ(7);

    final int value;

    Compare(int value) {
      this.value = value;
    }
  }

  /** struct scmp_arg_cmp: argument index, operator, datum_a (value, or mask for MASKED_EQ), datum_b. */
  public record ArgCmp(int arg, Compare op, long a, long b) {}

  /** One rule: action when the syscall is made and every comparison holds. */
  public record Rule(String syscall, int action, List<ArgCmp> args) {}

  /** The syscall number libseccomp knows for the native architecture, or a negative number if none. */
  public static int resolve(String name) {
    return lib().seccomp_syscall_resolve_name(name);
  }

  /**
   * Exports a filter (default action, then the rules) as BPF into a fresh memfd positioned at 0, ready to be
   * read by bwrap; the caller owns (and closes) the returned fd. A syscall this kernel's libseccomp does not
   * know is an error (a policy naming a syscall that does not exist is a bug, not something to skip).
   */
  public static int exportBpf(int defaultAction, List<Rule> rules) {
    LibSeccomp l = lib();
    Pointer ctx = l.seccomp_init(defaultAction);
    if (ctx == null) {
      throw new KernelException("seccomp_init", Uapi.ENOMEM);
    }
    try {
      for (Rule r : rules) {
        int nr = l.seccomp_syscall_resolve_name(r.syscall());
        if (nr < 0) {
          throw new KernelException("seccomp_syscall_resolve_name(" + r.syscall() + ")", Uapi.ENOSYS);
        }
        Memory args = null;
        if (!r.args().isEmpty()) {
          args = new Memory(24L * r.args().size());
          for (int i = 0; i < r.args().size(); i++) {
            ArgCmp c = r.args().get(i);
            args.setInt(24L * i, c.arg());
            args.setInt(24L * i + 4, c.op().value);
            args.setLong(24L * i + 8, c.a());
            args.setLong(24L * i + 16, c.b());
          }
        }
        int rc = l.seccomp_rule_add_array(ctx, r.action(), nr, r.args().size(), args);
        if (rc < 0) {
          throw new KernelException("seccomp_rule_add(" + r.syscall() + ")", -rc);
        }
      }
      int fd = Kernel.memfdCreate("vfiovm-seccomp", 0);
      int rc = l.seccomp_export_bpf(ctx, fd);
      if (rc < 0) {
        Kernel.closeQuietly(fd);
        throw new KernelException("seccomp_export_bpf", -rc);
      }
      Kernel.seekStart(fd);
      return fd;
    } finally {
      l.seccomp_release(ctx);
    }
  }
}
