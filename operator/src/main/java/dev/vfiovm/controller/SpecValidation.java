package dev.vfiovm.controller;

import dev.vfiovm.api.Quantities;
import dev.vfiovm.api.BootSpec;
import dev.vfiovm.api.Console;
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
  // the CRD's own patterns (a current API server enforces them at admission; these are the fallback)
  private static final Pattern LABEL_NAME = Pattern.compile(VfioVmSpec.LABEL_VALUE_PATTERN);
  private static final Pattern LABEL_KEY = Pattern.compile(VfioVmSpec.LABEL_KEY_PATTERN);
  private static final Pattern NODE_NAME = Pattern.compile(VfioVmSpec.NODE_NAME_PATTERN);

  private SpecValidation() {}

  /** One thing wrong with the spec: the field path and what to change. */
  public record Violation(String field, String message) {
    @Override
    public String toString() {
      return field + ": " + message;
    }
  }

  /**
   * What a valid spec boots: the image the files come from and their absolute paths inside it (kernel with
   * optional initrd and cmdline, or disk). Null in a plan when the spec has no boot (firmware only).
   */
  public record Boot(String image, String kernel, String initrd, String cmdline, String disk) {}

  /** A valid spec, reduced to what the operator decides with and the node pod runs. */
  public record Plan(long memoryBytes, long memlockLimitBytes, List<String> devices, int cpus, Boot boot,
      Console console) {
    /** One vCPU, nothing booted, serial console. */
    public Plan(long memoryBytes, long memlockLimitBytes, List<String> devices) {
      this(memoryBytes, memlockLimitBytes, devices, 1, null, Console.Serial);
    }

    /** The same VM with this memory, limit and devices (a placed VM keeps what its ledger entry holds). */
    public Plan withResources(long memory, long limit, List<String> heldDevices) {
      return new Plan(memory, limit, heldDevices, cpus, boot, console);
    }
  }

  /** Longest kernel command line x86 Linux accepts (COMMAND_LINE_SIZE). */
  public static final int MAX_CMDLINE = 2048;
  /**
   * An OCI image reference as the distribution spec's reference grammar has it: [domain[:port]/]path[:tag][@digest],
   * path components lower-case.
   */
  private static final Pattern IMAGE_REFERENCE = Pattern.compile(
      "^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*"
          + "(?::[0-9]+)?/)?"
          + "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
          + "(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
          + "(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$");

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
    if (spec.getDevices().size() > VfioVmSpec.MAX_DEVICES) {
      violations.add(new Violation("spec.devices", spec.getDevices().size() + " devices are more than "
          + VfioVmSpec.MAX_DEVICES + "; list at most " + VfioVmSpec.MAX_DEVICES));
    }
    if (nodeName != null && !nodeName.isEmpty() && !NODE_NAME.matcher(nodeName).matches()) {
      violations.add(new Violation("spec.nodeName", "'" + nodeName + "' is not a valid node name"));
    }
    for (Map.Entry<String, String> label : spec.getNodeSelector().entrySet()) {
      String key = label.getKey();
      if (key == null || !LABEL_KEY.matcher(key).matches()) {
        violations.add(new Violation("spec.nodeSelector", "'" + key + "' is not a valid label key"));
      }
      String value = label.getValue() == null ? "" : label.getValue();
      if (!LABEL_NAME.matcher(value).matches()) {
        violations.add(new Violation("spec.nodeSelector['" + key + "']", "'" + value + "' is not a valid label value"));
      }
    }

    if (spec.getCpus() < VfioVmSpec.MIN_CPUS || spec.getCpus() > VfioVmSpec.MAX_CPUS) {
      violations.add(new Violation("spec.cpus", spec.getCpus() + " is out of range; set 1 to 64 vCPUs"));
    }
    Boot boot = boot(spec.getBoot(), violations);
    if (spec.getConsole() == null) {
      violations.add(new Violation("spec.console", "must be Serial or None"));
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
    return new Result(new Plan(memory, limit, List.copyOf(devices), spec.getCpus(), boot, spec.getConsole()),
        List.of());
  }

  /** spec.boot reduced to a Boot, or null (no boot, or a violation recorded). */
  private static Boot boot(BootSpec boot, List<Violation> violations) {
    if (boot == null) {
      return null;
    }
    int before = violations.size();
    boolean disk = boot.getContainerDisk() != null;
    boolean pvc = boot.getPersistentVolumeClaim() != null;
    String image = disk ? boot.getContainerDisk().getImage() : null;
    if (pvc) {
      violations.add(new Violation("spec.boot.persistentVolumeClaim", "not supported: node pods run in the "
          + "operator's namespace and can mount no PersistentVolumeClaim of the VM's namespace; put the boot "
          + "files into an OCI image and use spec.boot.containerDisk.image instead"));
    }
    if (disk && pvc) {
      violations.add(new Violation("spec.boot", "set exactly one source: containerDisk or persistentVolumeClaim, not both"));
    }
    if (!disk && !pvc) {
      violations.add(new Violation("spec.boot", "has no source; set spec.boot.containerDisk.image to the OCI image "
          + "that holds the boot files, or remove spec.boot to run the firmware only"));
    }
    if (disk) {
      if (image == null || image.isBlank()) {
        violations.add(new Violation("spec.boot.containerDisk.image",
            "required: the OCI image holding the boot files, e.g. registry.example/guests/demo:1.0"));
      } else if (image.length() > 1024 || !IMAGE_REFERENCE.matcher(image).matches()) {
        violations.add(new Violation("spec.boot.containerDisk.image", "'" + image + "' is not an OCI image "
            + "reference; write [registry[:port]/]name[:tag][@sha256:digest] with a lower-case name, "
            + "e.g. registry.example/guests/demo:1.0"));
      }
    }
    boolean hasKernel = present(boot.getKernel());
    boolean hasDisk = present(boot.getDisk());
    if (hasKernel && hasDisk) {
      violations.add(new Violation("spec.boot", "set either kernel (direct kernel boot) or disk (firmware boot), "
          + "not both"));
    } else if (!hasKernel && !hasDisk) {
      violations.add(new Violation("spec.boot", "set kernel (direct kernel boot, e.g. /boot/vmlinuz) or disk "
          + "(a raw or qcow2 image booted by the firmware), or remove spec.boot to run the firmware only"));
    }
    if (!hasKernel) {
      if (present(boot.getInitrd())) {
        violations.add(new Violation("spec.boot.initrd", "only with spec.boot.kernel; set kernel or remove initrd"));
      }
      if (present(boot.getCmdline())) {
        violations.add(new Violation("spec.boot.cmdline", "only with spec.boot.kernel; set kernel or remove cmdline"));
      }
    }
    path("spec.boot.kernel", boot.getKernel(), violations);
    path("spec.boot.initrd", boot.getInitrd(), violations);
    path("spec.boot.disk", boot.getDisk(), violations);
    String cmdline = boot.getCmdline();
    if (cmdline != null && cmdline.length() > MAX_CMDLINE) {
      violations.add(new Violation("spec.boot.cmdline", cmdline.length() + " characters is longer than the "
          + MAX_CMDLINE + " Linux accepts; shorten it"));
    } else if (cmdline != null && cmdline.chars().anyMatch(c -> c < 0x20 || c == 0x7f)) {
      violations.add(new Violation("spec.boot.cmdline", "contains a control character (newline, tab, NUL, ...); "
          + "separate parameters with spaces"));
    }
    if (violations.size() > before) {
      return null;
    }
    return new Boot(image.strip(), emptyToNull(boot.getKernel()), emptyToNull(boot.getInitrd()),
        emptyToNull(boot.getCmdline()), emptyToNull(boot.getDisk()));
  }

  private static void path(String field, String path, List<Violation> violations) {
    if (path == null || path.isEmpty()) {
      return;
    }
    if (!path.startsWith("/")) {
      violations.add(new Violation(field, "'" + path + "' is relative; give the absolute path inside the image, "
          + "e.g. /" + path.replaceFirst("^(\\./)+", "")));
    } else if (List.of(path.split("/")).contains("..")) {
      violations.add(new Violation(field, "'" + path + "' contains '..'; give the file's absolute path inside "
          + "the image without '..'"));
    } else if (path.endsWith("/") || path.chars().anyMatch(c -> c < 0x20 || c == 0x7f)) {
      violations.add(new Violation(field, "'" + path + "' is not a file path; give the absolute path of a file "
          + "inside the image, e.g. /boot/vmlinuz"));
    } else if (path.length() > 4095) {
      violations.add(new Violation(field, "longer than PATH_MAX (4095); shorten it"));
    }
  }

  private static boolean present(String value) {
    return value != null && !value.isEmpty();
  }

  private static String emptyToNull(String value) {
    return value == null || value.isEmpty() ? null : value;
  }
}
