package dev.vfiovm.controller;

import dev.vfiovm.api.DeviceSpec;
import dev.vfiovm.api.VfioVmSpec;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * What the CRD schema cannot say about a VfioVm spec (or what an older server did not enforce). An invalid
 * spec gets nothing: no UID, no placement, no pod; its status names each field and what to change.
 */
public final class SpecValidation {
  public static final long PAGE_SIZE = 4096;
  private static final Pattern PCI = Pattern.compile(DeviceSpec.PCI_ADDRESS_PATTERN);
  private static final Pattern MEMORY = Pattern.compile(VfioVmSpec.MEMORY_PATTERN);
  // label keys: optional DNS-subdomain prefix, then a name of 1..63 [A-Za-z0-9-_.] chars
  private static final Pattern LABEL_NAME = Pattern.compile("^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$");
  private static final Pattern DNS_SUBDOMAIN = Pattern.compile("^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$");

  private SpecValidation() {}

  /** One thing wrong with the spec: the field path and what to change. */
  public record Violation(String field, String message) {
    @Override
    public String toString() {
      return field + ": " + message;
    }
  }

  /** A valid spec, reduced to the numbers the operator decides with. */
  public record Plan(long memoryBytes, long memlockLimitBytes, List<String> devices) {}

  /** Either a plan or the violations (never both). */
  public record Result(Plan plan, List<Violation> violations) {
    public boolean valid() {
      return violations.isEmpty();
    }

    /** All violations in one line, for a condition message. */
    public String message() {
      return String.join("; ", violations.stream().map(Violation::toString).toList());
    }
  }

  private static String roundedUp(long bytes) {
    long pages = (bytes + PAGE_SIZE - 1) / PAGE_SIZE * PAGE_SIZE;
    String human = Quantities.human(pages);
    return human.equals(Long.toString(pages)) ? human : pages + " (" + human + ")";
  }

  public static Result validate(VfioVmSpec spec, long memlockOverheadBytes) {
    List<Violation> violations = new ArrayList<>();
    if (spec == null) {
      return new Result(null, List.of(new Violation("spec", "missing: set at least spec.memory (e.g. 4Gi)")));
    }
    long memory = 0;
    if (spec.getMemory() == null || spec.getMemory().isBlank()) {
      violations.add(new Violation("spec.memory", "required: set the guest RAM, e.g. 4Gi"));
    } else if (!MEMORY.matcher(spec.getMemory()).matches()) {
      violations.add(new Violation("spec.memory",
          "'" + spec.getMemory() + "' is not a positive quantity; write e.g. 4Gi, 512Mi or 4294967296"));
    } else {
      try {
        memory = Quantities.bytes(spec.getMemory());
        if (memory <= 0) {
          violations.add(new Violation("spec.memory", "must be positive, e.g. 4Gi"));
        } else if (memory % PAGE_SIZE != 0) {
          violations.add(new Violation("spec.memory", "'" + spec.getMemory() + "' = " + memory
              + " bytes is not a whole number of 4 KiB pages; use a multiple of 4096 bytes, e.g. "
              + roundedUp(memory)));
        }
      } catch (IllegalArgumentException e) {
        violations.add(new Violation("spec.memory", e.getMessage()));
      }
    }

    List<String> devices = new ArrayList<>();
    Set<String> seen = new HashSet<>();
    Set<String> duplicates = new LinkedHashSet<>();
    for (int i = 0; i < spec.getDevices().size(); i++) {
      DeviceSpec device = spec.getDevices().get(i);
      String address = device == null ? null : device.getPciAddress();
      String field = "spec.devices[" + i + "].pciAddress";
      if (address == null || address.isBlank()) {
        violations.add(new Violation(field, "required: the device's PCI address, e.g. 0000:3b:00.0"));
      } else if (!PCI.matcher(address).matches()) {
        violations.add(new Violation(field, "'" + address
            + "' is not a lower-case PCI address DDDD:BB:DD.F as under /sys/bus/pci/devices, e.g. 0000:3b:00.0"));
      } else if (!seen.add(address)) {
        duplicates.add(address);
      } else {
        devices.add(address);
      }
    }
    for (String duplicate : duplicates) {
      violations.add(new Violation("spec.devices",
          "device " + duplicate + " is listed more than once; list each device once"));
    }

    String nodeName = spec.getNodeName();
    if (nodeName != null && !nodeName.isEmpty() && !DNS_SUBDOMAIN.matcher(nodeName).matches()) {
      violations.add(new Violation("spec.nodeName", "'" + nodeName + "' is not a valid node name"));
    }
    for (Map.Entry<String, String> label : spec.getNodeSelector().entrySet()) {
      String key = label.getKey();
      String name = key.contains("/") ? key.substring(key.indexOf('/') + 1) : key;
      String prefix = key.contains("/") ? key.substring(0, key.indexOf('/')) : null;
      if (name.isEmpty() || !LABEL_NAME.matcher(name).matches()
          || (prefix != null && !DNS_SUBDOMAIN.matcher(prefix).matches())) {
        violations.add(new Violation("spec.nodeSelector", "'" + key + "' is not a valid label key"));
      }
      String value = label.getValue() == null ? "" : label.getValue();
      if (!LABEL_NAME.matcher(value).matches()) {
        violations.add(new Violation("spec.nodeSelector['" + key + "']", "'" + value + "' is not a valid label value"));
      }
    }

    if (!spec.getVmCommand().isEmpty() && (spec.getVmCommand().get(0) == null || spec.getVmCommand().get(0).isBlank())) {
      violations.add(new Violation("spec.vmCommand[0]", "must name the program to run; remove spec.vmCommand or set it"));
    }
    if (spec.getAccounting() == null) {
      violations.add(new Violation("spec.accounting", "must be PerProcess or PerUser"));
    }
    if (spec.getDmaBackend() == null) {
      violations.add(new Violation("spec.dmaBackend", "must be Auto, Iommufd or IoUring"));
    }

    long limit = 0;
    if (memory > 0 && violations.isEmpty()) {
      try {
        limit = MemlockPolicy.limitBytes(memory, devices.size(), spec.isViommu(), memlockOverheadBytes);
      } catch (ArithmeticException e) {
        violations.add(new Violation("spec.memory",
            "memlock limit " + MemlockPolicy.factor(spec.isViommu(), devices.size()) + " x " + spec.getMemory()
                + " + overhead overflows; lower spec.memory"));
      }
    }
    if (!violations.isEmpty()) {
      return new Result(null, List.copyOf(violations));
    }
    return new Result(new Plan(memory, limit, List.copyOf(devices)), List.of());
  }
}
