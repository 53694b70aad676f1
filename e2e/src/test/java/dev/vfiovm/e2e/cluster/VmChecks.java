package dev.vfiovm.e2e.cluster;

import dev.vfiovm.api.VfioVm;
import dev.vfiovm.api.VfioVmStatus;
import io.fabric8.kubernetes.api.model.Condition;
import java.util.List;
import java.util.Objects;
import java.util.Optional;

/** Reading VfioVm status the way the suite's assertions need it. */
public final class VmChecks {
  private VmChecks() {}

  public static Optional<Condition> condition(VfioVm vm, String type) {
    VfioVmStatus status = vm == null ? null : vm.getStatus();
    if (status == null) {
      return Optional.empty();
    }
    return status.getConditions().stream().filter(c -> type.equals(c.getType())).findFirst();
  }

  /** True when every VM has a host UID and no two share one. */
  public static boolean distinctHostUids(List<VfioVm> vms) {
    List<Long> uids = vms.stream().map(v -> v.getStatus() == null ? null : v.getStatus().getHostUid()).toList();
    return uids.stream().allMatch(Objects::nonNull) && uids.stream().distinct().count() == uids.size();
  }

  /** One line per VM for assertion messages: where it is and why. */
  public static String describe(VfioVm vm) {
    if (vm == null) {
      return "(gone)";
    }
    String name = vm.getMetadata().getNamespace() + "/" + vm.getMetadata().getName();
    VfioVmStatus s = vm.getStatus();
    if (s == null) {
      return name + ": no status yet";
    }
    StringBuilder b =
        new StringBuilder(name)
            .append(": phase=").append(s.getPhase())
            .append(" node=").append(s.getNodeName())
            .append(" uid=").append(s.getHostUid())
            .append(" memlock=").append(s.getMemlockLimitBytes())
            .append(" pinned=").append(s.getPinnedBytes())
            .append(" message=").append(s.getMessage());
    s.getConditions()
        .forEach(c -> b.append(" [").append(c.getType()).append('=').append(c.getStatus()).append(' ')
            .append(c.getReason()).append(": ").append(c.getMessage()).append(']'));
    return b.toString();
  }
}
