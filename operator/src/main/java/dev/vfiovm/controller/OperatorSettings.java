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
 * @param vmmOverheadBytes the VMM's own memory beyond guest RAM in each node pod's memory request/limit
 *     ({@code --vmm-overhead}, default {@link NodePodShape#VMM_OVERHEAD_BYTES}; {@link NodePodShape#podMemoryBytes})
 * @param agentMemoryBytes the node agent's JVM in each node pod's memory request/limit ({@code --agent-memory},
 *     default {@link NodePodShape#AGENT_MEMORY_BYTES})
 * @param retryMaxAttempts how often a failed reconcile of one VM is retried in a row (JOSDK's GenericRetry),
 *     with an interval from {@code retryInitialIntervalMillis} doubling up to a minute
 * @param maxReconciliationIntervalSeconds every VM is reconciled at least this often (JOSDK's
 *     maxReconciliationInterval): the safety net under the event-driven wake-ups
 */
public record OperatorSettings(
    long uidRangeStart,
    long uidRangeSize,
    long memlockOverheadBytes,
    long hostReserveBytes,
    String nodePodNamespace,
    String nodePodImage,
    String nodePodServiceAccount,
    List<String> nodePodCapabilities,
    long vmmOverheadBytes,
    long agentMemoryBytes,
    int retryMaxAttempts,
    long retryInitialIntervalMillis,
    long maxReconciliationIntervalSeconds) {
  public static final int DEFAULT_RETRY_MAX_ATTEMPTS = 10;
  public static final long DEFAULT_RETRY_INITIAL_INTERVAL_MILLIS = 2000;
  public static final long DEFAULT_MAX_RECONCILIATION_INTERVAL_SECONDS = 300;

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
    if (vmmOverheadBytes < 0) {
      throw new IllegalArgumentException("--vmm-overhead must not be negative");
    }
    if (agentMemoryBytes < NodePodShape.MIN_AGENT_MEMORY_BYTES) {
      throw new IllegalArgumentException("--agent-memory " + agentMemoryBytes + " is below "
          + NodePodShape.MIN_AGENT_MEMORY_BYTES + " bytes: the node agent's JVM (" + NodePodShape.AGENT_JAVA_OPTIONS
          + ") needs that much; give at least 192Mi");
    }
    if (retryMaxAttempts < 0 || retryInitialIntervalMillis < 1 || maxReconciliationIntervalSeconds < 1) {
      throw new IllegalArgumentException("reconcile retries must not be negative, the retry interval and the "
          + "maximal reconciliation interval must be positive");
    }
  }

  /** With the default VMM overhead, agent memory, retry and reconciliation interval. */
  public OperatorSettings(long uidRangeStart, long uidRangeSize, long memlockOverheadBytes, long hostReserveBytes,
      String nodePodNamespace, String nodePodImage, String nodePodServiceAccount, List<String> nodePodCapabilities) {
    this(uidRangeStart, uidRangeSize, memlockOverheadBytes, hostReserveBytes, nodePodNamespace, nodePodImage,
        nodePodServiceAccount, nodePodCapabilities, NodePodShape.VMM_OVERHEAD_BYTES, NodePodShape.AGENT_MEMORY_BYTES,
        DEFAULT_RETRY_MAX_ATTEMPTS, DEFAULT_RETRY_INITIAL_INTERVAL_MILLIS, DEFAULT_MAX_RECONCILIATION_INTERVAL_SECONDS);
  }

  /** The same settings with this VMM overhead and agent memory in each node pod's memory. */
  public OperatorSettings withPodMemory(long vmmOverheadBytes, long agentMemoryBytes) {
    return new OperatorSettings(uidRangeStart, uidRangeSize, memlockOverheadBytes, hostReserveBytes, nodePodNamespace,
        nodePodImage, nodePodServiceAccount, nodePodCapabilities, vmmOverheadBytes, agentMemoryBytes, retryMaxAttempts,
        retryInitialIntervalMillis, maxReconciliationIntervalSeconds);
  }

  /** The same settings with this reconcile retry and maximal reconciliation interval. */
  public OperatorSettings withReconcileTiming(int retries, long retryInitialMillis, long maxIntervalSeconds) {
    return new OperatorSettings(uidRangeStart, uidRangeSize, memlockOverheadBytes, hostReserveBytes, nodePodNamespace,
        nodePodImage, nodePodServiceAccount, nodePodCapabilities, vmmOverheadBytes, agentMemoryBytes, retries,
        retryInitialMillis, maxIntervalSeconds);
  }

  /** With the default node-pod capabilities. */
  public OperatorSettings(long uidRangeStart, long uidRangeSize, long memlockOverheadBytes, long hostReserveBytes,
      String nodePodNamespace, String nodePodImage, String nodePodServiceAccount) {
    this(uidRangeStart, uidRangeSize, memlockOverheadBytes, hostReserveBytes, nodePodNamespace, nodePodImage,
        nodePodServiceAccount, DEFAULT_NODE_POD_CAPABILITIES);
  }

  public OperatorSettings withNodePodCapabilities(List<String> capabilities) {
    return new OperatorSettings(uidRangeStart, uidRangeSize, memlockOverheadBytes, hostReserveBytes, nodePodNamespace,
        nodePodImage, nodePodServiceAccount, capabilities, vmmOverheadBytes, agentMemoryBytes, retryMaxAttempts,
        retryInitialIntervalMillis, maxReconciliationIntervalSeconds);
  }

  public static OperatorSettings defaults(String nodePodNamespace, String nodePodImage) {
    return new OperatorSettings(
        DEFAULT_UID_RANGE_START, DEFAULT_UID_RANGE_SIZE, GIB, 2 * GIB, nodePodNamespace, nodePodImage, "vfiovm-node");
  }

  public OperatorSettings withUidRange(long start, long size) {
    return new OperatorSettings(
        start, size, memlockOverheadBytes, hostReserveBytes, nodePodNamespace, nodePodImage, nodePodServiceAccount,
        nodePodCapabilities, vmmOverheadBytes, agentMemoryBytes, retryMaxAttempts,
        retryInitialIntervalMillis, maxReconciliationIntervalSeconds);
  }

  public OperatorSettings withMemlockOverhead(long bytes) {
    return new OperatorSettings(
        uidRangeStart, uidRangeSize, bytes, hostReserveBytes, nodePodNamespace, nodePodImage, nodePodServiceAccount,
        nodePodCapabilities, vmmOverheadBytes, agentMemoryBytes, retryMaxAttempts,
        retryInitialIntervalMillis, maxReconciliationIntervalSeconds);
  }

  public OperatorSettings withHostReserve(long bytes) {
    return new OperatorSettings(
        uidRangeStart, uidRangeSize, memlockOverheadBytes, bytes, nodePodNamespace, nodePodImage, nodePodServiceAccount,
        nodePodCapabilities, vmmOverheadBytes, agentMemoryBytes, retryMaxAttempts,
        retryInitialIntervalMillis, maxReconciliationIntervalSeconds);
  }

  public UidRange uidRange() {
    return new UidRange(uidRangeStart, uidRangeSize);
  }
}
