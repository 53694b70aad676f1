package dev.vfiovm.api;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.annotation.JsonInclude;
import java.util.ArrayList;
import java.util.List;

/**
 * What the node agent reports about its VM: written atomically to its --report file (which is also the
 * node pod's terminationMessagePath) and, inside a cluster, to its own pod's annotation {@link #POD_ANNOTATION}.
 * The operator turns it into the VfioVm status. Unknown fields are ignored so agent and operator may differ
 * by a version.
 */
@JsonInclude(JsonInclude.Include.NON_NULL)
@JsonIgnoreProperties(ignoreUnknown = true)
public class NodeAgentReport {
  /** Pod annotation holding the latest report as JSON. */
  public static final String POD_ANNOTATION = "vfiovm.dev/report";

  /** Agent phases, in order; Failed and Stopped are final. */
  public enum AgentPhase {
    /** Resolving devices, opening iommufd, starting the VM process. */
    Starting,
    /** The VMM runs the guest (QMP: running, every device present) with guest memory pinned under its limit. */
    Running,
    /** Stopped on request (SIGTERM or --exit-when-running) or the guest powered off; every pin released. */
    Stopped,
    /** Something failed; see error and message. */
    Failed
  }

  private AgentPhase phase;
  /** NS/NAME of the VfioVm. */
  private String vm;
  private Long hostUid;
  private Long memlockLimitBytes;
  private Long pinnedBytes;
  /** Backend really used: Iommufd or IoUring. */
  private String dmaBackend;
  /** Accounting really in force: PerProcess or PerUser. */
  private String accounting;
  private Long vmPid;
  private List<DeviceStatus> devices = new ArrayList<>();
  /** errno name (ENOMEM, EPERM, ...) or a short code (DeviceNotFound, ...) on failure. */
  private String error;
  private String message;
  /** The VMM really run: "QEMU 10.0.2", or the --vm-command's program. */
  private String vmm;
  /** Where the guest's serial console goes (e.g. "stdout of the node agent"), or "none". */
  private String console;
  /** Bytes of serial console output so far (at the last report). */
  private Long consoleBytes;
  /**
   * The VM's own cgroup (cgroup2 path on the node, below the agent's own; teardown writes cgroup.kill), or
   * null where the agent cannot create one (cgroup2 not writable: the sandbox's PID namespace holds then).
   */
  @JsonInclude(JsonInclude.Include.ALWAYS)
  private String cgroup;
  /** How the VM process is contained (bubblewrap namespaces, seccomp), in a few words. */
  private String sandbox;

  public String getCgroup() {
    return cgroup;
  }

  public void setCgroup(String cgroup) {
    this.cgroup = cgroup;
  }

  public String getSandbox() {
    return sandbox;
  }

  public void setSandbox(String sandbox) {
    this.sandbox = sandbox;
  }

  public String getVmm() {
    return vmm;
  }

  public void setVmm(String vmm) {
    this.vmm = vmm;
  }

  public String getConsole() {
    return console;
  }

  public void setConsole(String console) {
    this.console = console;
  }

  public Long getConsoleBytes() {
    return consoleBytes;
  }

  public void setConsoleBytes(Long consoleBytes) {
    this.consoleBytes = consoleBytes;
  }

  public AgentPhase getPhase() {
    return phase;
  }

  public void setPhase(AgentPhase phase) {
    this.phase = phase;
  }

  public String getVm() {
    return vm;
  }

  public void setVm(String vm) {
    this.vm = vm;
  }

  public Long getHostUid() {
    return hostUid;
  }

  public void setHostUid(Long hostUid) {
    this.hostUid = hostUid;
  }

  public Long getMemlockLimitBytes() {
    return memlockLimitBytes;
  }

  public void setMemlockLimitBytes(Long memlockLimitBytes) {
    this.memlockLimitBytes = memlockLimitBytes;
  }

  public Long getPinnedBytes() {
    return pinnedBytes;
  }

  public void setPinnedBytes(Long pinnedBytes) {
    this.pinnedBytes = pinnedBytes;
  }

  public String getDmaBackend() {
    return dmaBackend;
  }

  public void setDmaBackend(String dmaBackend) {
    this.dmaBackend = dmaBackend;
  }

  public String getAccounting() {
    return accounting;
  }

  public void setAccounting(String accounting) {
    this.accounting = accounting;
  }

  public Long getVmPid() {
    return vmPid;
  }

  public void setVmPid(Long vmPid) {
    this.vmPid = vmPid;
  }

  public List<DeviceStatus> getDevices() {
    return devices;
  }

  public void setDevices(List<DeviceStatus> devices) {
    this.devices = devices == null ? new ArrayList<>() : devices;
  }

  public String getError() {
    return error;
  }

  public void setError(String error) {
    this.error = error;
  }

  public String getMessage() {
    return message;
  }

  public void setMessage(String message) {
    this.message = message;
  }
}
