package dev.vfiovm.api;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.annotation.JsonInclude;

/**
 * What the node agent reports about its VM: written atomically to its --report file (which is also the
 * node pod's terminationMessagePath) and, inside a cluster, to its own pod's annotation {@link #POD_ANNOTATION}.
 * The operator turns it into the VfioVm status. Unknown fields are ignored so agent and operator may differ
 * by a version. The fields it shares with the status (UID, limit, pins, accounting, backend, devices) are
 * {@link PinnedMemory}'s.
 */
@JsonInclude(JsonInclude.Include.NON_NULL)
@JsonIgnoreProperties(ignoreUnknown = true)
public class NodeAgentReport extends PinnedMemory {
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
  private Long vmPid;
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

  public Long getVmPid() {
    return vmPid;
  }

  public void setVmPid(Long vmPid) {
    this.vmPid = vmPid;
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
