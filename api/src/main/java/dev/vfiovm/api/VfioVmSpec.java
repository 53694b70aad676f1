package dev.vfiovm.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import io.fabric8.generator.annotation.Default;
import io.fabric8.generator.annotation.Max;
import io.fabric8.generator.annotation.Min;
import io.fabric8.generator.annotation.Pattern;
import io.fabric8.generator.annotation.Required;
import io.fabric8.generator.annotation.Size;
import io.fabric8.generator.annotation.ValidationRule;
import io.fabric8.kubernetes.api.model.IntOrString;
import io.fabric8.crd.generator.annotation.SchemaFrom;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

@JsonInclude(JsonInclude.Include.NON_NULL)
public class VfioVmSpec {
  public static final int MIN_CPUS = 1;
  public static final int MAX_CPUS = 64;
  /** A positive Kubernetes quantity without exponent (e.g. 4Gi, 512Mi, 1.5Gi, 4294967296). */
  public static final String MEMORY_PATTERN =
      "^(0*[1-9][0-9]*(\\.[0-9]+)?|0*\\.[0-9]*[1-9][0-9]*)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$";
  /** Most devices one VM may list (also the CRD's maxItems). */
  public static final int MAX_DEVICES = 32;
  /** A node name: a DNS subdomain (lower-case), or empty for "let the operator place it". */
  public static final String NODE_NAME_PATTERN = "^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?)?$";
  /** A label value (also a label key's name part): at most 63 of [A-Za-z0-9-_.], alphanumeric at both ends. */
  public static final String LABEL_VALUE_PATTERN = "^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$";
  // (the label patterns have no backslash or quote: they go into single-quoted CEL string literals as they are)
  /** A label key: an optional DNS-subdomain prefix and '/', then a non-empty name as in a label value. */
  public static final String LABEL_KEY_PATTERN =
      "^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$";
  /** Most labels spec.nodeSelector may name (also the CRD's maxProperties). */
  public static final int MAX_NODE_SELECTOR = 64;

  @Required
  @Pattern(MEMORY_PATTERN)
  @Size(max = 64)
  @SchemaFrom(type = IntOrString.class)
  @ValidationRule(value = "type(self) != int || (self > 0 && self % 4096 == 0)",
      message = "spec.memory as a number of bytes must be a positive multiple of 4096 (whole 4 KiB pages), e.g. 4294967296")
  @JsonPropertyDescription(
      "Guest RAM as a positive Kubernetes quantity (e.g. 4Gi) or a number of bytes. It must be a whole number of "
          + "4 KiB pages. "
          + "All of it is pinned for DMA, so it counts against the VM's memlock limit and the node's budget.")
  private String memory;

  @Size(max = MAX_DEVICES)
  @JsonPropertyDescription("VFIO devices assigned to the VM, each by PCI address; no address may appear twice "
      + "(at most 32 devices).")
  private List<DeviceSpec> devices = new ArrayList<>();

  @Pattern(NODE_NAME_PATTERN)
  @Size(max = 253)
  @JsonPropertyDescription(
      "Run the VM on this node (a node name: lower-case DNS subdomain). Empty: the operator places it on a node "
          + "whose pinned-memory budget fits.")
  private String nodeName;

  @Size(max = MAX_NODE_SELECTOR)
  @ValidationRule(value = "self.all(k, k.size() <= 317 && k.matches('" + LABEL_KEY_PATTERN + "'))",
      message = "spec.nodeSelector: every key must be a label key: an optional DNS-subdomain prefix and '/', then a "
          + "name of at most 63 characters (A-Z a-z 0-9 - _ .) that starts and ends alphanumeric, e.g. "
          + "kubernetes.io/hostname")
  @JsonPropertyDescription("Only nodes carrying all these labels are considered for placement (at most 64).")
  private Map<String, String> nodeSelector = new LinkedHashMap<>();

  @Default("false")
  @JsonPropertyDescription(
      "The guest has a vIOMMU: each device then pins guest memory separately, so the memlock limit is "
          + "devices x memory + overhead instead of memory + overhead.")
  private boolean viommu;

  @Default("PerUser")
  @JsonPropertyDescription(
      "Which kernel counter bounds the pins. PerUser (default): the per-VM host UID's counter, which counts "
          + "every process of the VM across fork and exec, so it bounds a hostile VM as a whole. PerProcess: "
          + "iommufd's per-process mode (RLIMIT_MODE=1), charged to the mapping process's mm only; a process "
          + "that forks or execs starts a fresh budget, so it bounds each process, not the VM.")
  private Accounting accounting = Accounting.PerUser;

  @Default("Auto")
  @JsonPropertyDescription(
      "How guest memory is pinned. Iommufd: real DMA mapping through /dev/iommu. IoUring: accounting only, "
          + "no device (tests, nodes without an IOMMU). Auto: Iommufd where the node has /dev/iommu, else IoUring.")
  private DmaBackend dmaBackend = DmaBackend.Auto;

  @Default("1")
  @Min(MIN_CPUS)
  @Max(MAX_CPUS)
  @JsonPropertyDescription("Number of vCPUs of the guest, 1 to 64 (default 1).")
  private int cpus = 1;

  @JsonPropertyDescription(
      "What the VM boots: a source (containerDisk: an OCI image holding the files) and either kernel "
          + "(+ initrd, cmdline) for a direct kernel boot or disk for a disk image booted by the firmware. "
          + "Without boot the VM still runs: QEMU with its firmware only, devices assigned and guest RAM pinned, "
          + "nothing booted.")
  private BootSpec boot;

  @Default("Serial")
  @JsonPropertyDescription(
      "Serial (default): the guest's serial console (ttyS0) is the node pod's stdout, so kubectl logs shows the "
          + "guest booting; status.console says which pod. None: no console.")
  private Console console = Console.Serial;

  public String getMemory() {
    return memory;
  }

  public void setMemory(String memory) {
    this.memory = memory;
  }

  public List<DeviceSpec> getDevices() {
    return devices;
  }

  public void setDevices(List<DeviceSpec> devices) {
    this.devices = devices == null ? new ArrayList<>() : devices;
  }

  public String getNodeName() {
    return nodeName;
  }

  public void setNodeName(String nodeName) {
    this.nodeName = nodeName;
  }

  public Map<String, String> getNodeSelector() {
    return nodeSelector;
  }

  public void setNodeSelector(Map<String, String> nodeSelector) {
    this.nodeSelector = nodeSelector == null ? new LinkedHashMap<>() : nodeSelector;
  }

  public boolean isViommu() {
    return viommu;
  }

  public void setViommu(boolean viommu) {
    this.viommu = viommu;
  }

  public Accounting getAccounting() {
    return accounting;
  }

  public void setAccounting(Accounting accounting) {
    this.accounting = accounting;
  }

  public DmaBackend getDmaBackend() {
    return dmaBackend;
  }

  public void setDmaBackend(DmaBackend dmaBackend) {
    this.dmaBackend = dmaBackend;
  }

  public int getCpus() {
    return cpus;
  }

  public void setCpus(int cpus) {
    this.cpus = cpus;
  }

  public BootSpec getBoot() {
    return boot;
  }

  public void setBoot(BootSpec boot) {
    this.boot = boot;
  }

  public Console getConsole() {
    return console;
  }

  public void setConsole(Console console) {
    this.console = console;
  }
}
