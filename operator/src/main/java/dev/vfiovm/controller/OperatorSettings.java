package dev.vfiovm.controller;

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
 */
public record OperatorSettings(
    long uidRangeStart,
    long uidRangeSize,
    long memlockOverheadBytes,
    long hostReserveBytes,
    String nodePodNamespace,
    String nodePodImage,
    String nodePodServiceAccount) {
  public static final long DEFAULT_UID_RANGE_START = 0x70000000L;
  public static final long DEFAULT_UID_RANGE_SIZE = 65536;
  public static final long GIB = 1L << 30;

  public OperatorSettings {
    Objects.requireNonNull(nodePodNamespace, "nodePodNamespace");
    Objects.requireNonNull(nodePodImage, "nodePodImage");
    Objects.requireNonNull(nodePodServiceAccount, "nodePodServiceAccount");
    if (uidRangeStart < 1 || uidRangeSize < 1 || uidRangeStart + uidRangeSize - 1 > 0xFFFFFFFEL) {
      throw new IllegalArgumentException(
          "UID range " + uidRangeStart + "+" + uidRangeSize + " must lie within 1..4294967294");
    }
    if (memlockOverheadBytes < 0 || hostReserveBytes < 0) {
      throw new IllegalArgumentException("memlock overhead and host reserve must not be negative");
    }
  }

  public static OperatorSettings defaults(String nodePodNamespace, String nodePodImage) {
    return new OperatorSettings(
        DEFAULT_UID_RANGE_START, DEFAULT_UID_RANGE_SIZE, GIB, 2 * GIB, nodePodNamespace, nodePodImage, "vfiovm-node");
  }

  public OperatorSettings withUidRange(long start, long size) {
    return new OperatorSettings(
        start, size, memlockOverheadBytes, hostReserveBytes, nodePodNamespace, nodePodImage, nodePodServiceAccount);
  }

  public OperatorSettings withMemlockOverhead(long bytes) {
    return new OperatorSettings(
        uidRangeStart, uidRangeSize, bytes, hostReserveBytes, nodePodNamespace, nodePodImage, nodePodServiceAccount);
  }

  public OperatorSettings withHostReserve(long bytes) {
    return new OperatorSettings(
        uidRangeStart, uidRangeSize, memlockOverheadBytes, bytes, nodePodNamespace, nodePodImage, nodePodServiceAccount);
  }

  public UidRange uidRange() {
    return new UidRange(uidRangeStart, uidRangeSize);
  }
}
