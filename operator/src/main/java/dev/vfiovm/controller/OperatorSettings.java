package dev.vfiovm.controller;

import java.util.List;
import java.util.Objects;

/**
 * The operator's settings (see the `operator` subcommand, which fills them from options and env vars).
 *
 * @param uidRangeStart first host UID handed to VMs
 * @param uidRangeSize number of host UIDs in the range
 * @param memlockOverheadBytes added to factor x memory in every VM's memlock limit
 * @param hostReserveBytes memory of each node kept out of the VM budget (node annotation overrides)
 * @param nodePodNamespace namespace of all node pods (the operator's own)
 * @param nodePodImage image of the node pods (the operator's image)
 * @param nodePodServiceAccount name prefix of each VM's node-pod identity ({@link NodePodIdentity})
 * @param nodePodCapabilities capabilities of the node-agent container (all others dropped); a host whose root
 *     lacks one (a runtime cannot grant what it does not hold) runs with a smaller set
 */
public record OperatorSettings(
    long uidRangeStart,
    long uidRangeSize,
    long memlockOverheadBytes,
    long hostReserveBytes,
    String nodePodNamespace,
    String nodePodImage,
    String nodePodServiceAccount,
    List<String> nodePodCapabilities) {
  /**
   * What the node agent does needs exactly these (docs/node-pod.md): setpriv to the VM's UID/GID and clearing
   * its groups (SETUID, SETGID), dropping the bounding set (SETPCAP), signalling the VM process (KILL), reading
   * the kernel's count of its io_uring-registered memory in /proc/PID/fdinfo of the VM process, another UID and
   * not dumpable (SYS_PTRACE: ptrace-read access, and the container's PID namespace holds only this VM), raising
   * RLIMIT_MEMLOCK above the inherited hard limit and iommufd's per-process RLIMIT_MODE (SYS_RESOURCE).
   */
  public static final List<String> DEFAULT_NODE_POD_CAPABILITIES =
      List.of("SETUID", "SETGID", "SETPCAP", "KILL", "SYS_PTRACE", "SYS_RESOURCE");
  public static final long DEFAULT_UID_RANGE_START = 0x70000000L;
  public static final long DEFAULT_UID_RANGE_SIZE = 65536;
  public static final long GIB = 1L << 30;

  public OperatorSettings {
    Objects.requireNonNull(nodePodNamespace, "nodePodNamespace");
    Objects.requireNonNull(nodePodImage, "nodePodImage");
    Objects.requireNonNull(nodePodServiceAccount, "nodePodServiceAccount");
    nodePodCapabilities = nodePodCapabilities == null ? DEFAULT_NODE_POD_CAPABILITIES : List.copyOf(nodePodCapabilities);
    for (String cap : nodePodCapabilities) {
      if (!cap.matches("[A-Z_]+") || cap.startsWith("CAP_")) {
        throw new IllegalArgumentException("node pod capability '" + cap
            + "' is not a capability name as Kubernetes takes it (upper case, no CAP_ prefix, e.g. SYS_RESOURCE)");
      }
    }
    if (uidRangeStart < 1 || uidRangeSize < 1 || uidRangeStart + uidRangeSize - 1 > 0xFFFFFFFEL) {
      throw new IllegalArgumentException(
          "UID range " + uidRangeStart + "+" + uidRangeSize + " must lie within 1..4294967294");
    }
    if (memlockOverheadBytes < 0 || hostReserveBytes < 0) {
      throw new IllegalArgumentException("memlock overhead and host reserve must not be negative");
    }
  }

  /** With the default node-pod capabilities. */
  public OperatorSettings(long uidRangeStart, long uidRangeSize, long memlockOverheadBytes, long hostReserveBytes,
      String nodePodNamespace, String nodePodImage, String nodePodServiceAccount) {
    this(uidRangeStart, uidRangeSize, memlockOverheadBytes, hostReserveBytes, nodePodNamespace, nodePodImage,
        nodePodServiceAccount, DEFAULT_NODE_POD_CAPABILITIES);
  }

  public OperatorSettings withNodePodCapabilities(List<String> capabilities) {
    return new OperatorSettings(uidRangeStart, uidRangeSize, memlockOverheadBytes, hostReserveBytes, nodePodNamespace,
        nodePodImage, nodePodServiceAccount, capabilities);
  }

  public static OperatorSettings defaults(String nodePodNamespace, String nodePodImage) {
    return new OperatorSettings(
        DEFAULT_UID_RANGE_START, DEFAULT_UID_RANGE_SIZE, GIB, 2 * GIB, nodePodNamespace, nodePodImage, "vfiovm-node");
  }

  public OperatorSettings withUidRange(long start, long size) {
    return new OperatorSettings(
        start, size, memlockOverheadBytes, hostReserveBytes, nodePodNamespace, nodePodImage, nodePodServiceAccount,
        nodePodCapabilities);
  }

  public OperatorSettings withMemlockOverhead(long bytes) {
    return new OperatorSettings(
        uidRangeStart, uidRangeSize, bytes, hostReserveBytes, nodePodNamespace, nodePodImage, nodePodServiceAccount,
        nodePodCapabilities);
  }

  public OperatorSettings withHostReserve(long bytes) {
    return new OperatorSettings(
        uidRangeStart, uidRangeSize, memlockOverheadBytes, bytes, nodePodNamespace, nodePodImage, nodePodServiceAccount,
        nodePodCapabilities);
  }

  public UidRange uidRange() {
    return new UidRange(uidRangeStart, uidRangeSize);
  }
}
