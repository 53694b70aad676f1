package dev.vfiovm.node;

import dev.vfiovm.api.Quantities;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Stack;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.IParameterConsumer;
import picocli.CommandLine.Model.ArgSpec;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/** `node-agent`: the privileged per-VM process of a node pod; also runs by hand as root. */
@Command(
    name = "node-agent",
    mixinStandardHelpOptions = true,
    description = {
      "Starts one VM's QEMU as the VM's host UID in its own user namespace, with its RLIMIT_MEMLOCK set from",
      "outside and the iommufd and VFIO device fds handed over unbound, so QEMU's own pins are charged to it;",
      "supervises it over QMP, copies its serial console to stdout, reports, stops it on SIGTERM.",
      "Exit 0 when stopped; 1 with one stderr line on failure."
    })
public final class NodeAgentCommand implements Callable<Integer> {
  @Spec CommandSpec spec;

  @Option(names = "--vm", required = true, paramLabel = "NS/NAME", description = "The VfioVm.")
  String vm;

  @Option(names = "--host-uid", required = true, paramLabel = "UID", description = "The VM's own host UID.")
  long hostUid;

  @Option(names = "--memory", required = true, paramLabel = "Q", description = "Guest memory, e.g. 4Gi.")
  String memory;

  @Option(names = "--memlock", required = true, paramLabel = "Q", description = "RLIMIT_MEMLOCK of the VM process.")
  String memlock;

  @Option(names = "--device", paramLabel = "BDF", description = "PCI address of a VFIO device (repeatable).")
  List<String> devices = new ArrayList<>();

  @Option(names = "--accounting", defaultValue = "per-user", paramLabel = "per-process|per-user")
  String accounting;

  @Option(names = "--dma-backend", defaultValue = "auto", paramLabel = "auto|iommufd|io-uring")
  String dmaBackend;

  @Option(names = "--report", paramLabel = "FILE", description = "Report JSON, rewritten atomically.")
  Path report;

  @Option(names = "--report-pod", paramLabel = "NS/NAME", description = "Pod whose annotation gets the report.")
  String reportPod;

  @Option(
      names = "--vm-command",
      arity = "1..*",
      paramLabel = "CMD",
      parameterConsumer = RestOfLine.class,
      description = "Last option: run CMD ARG... as the VM process instead of QEMU, same chain and fds (all remaining arguments).")
  List<String> vmCommand = new ArrayList<>();

  @Option(
      names = "--vm-ro-bind",
      paramLabel = "PATH",
      description = "CLI only (tests, probes): one more host path visible read-only inside the VM's sandbox (repeatable).")
  List<String> vmReadOnly = new ArrayList<>();

  @Option(
      names = {"--exit-when-running", "--exit-after-map"},
      description = "Reach Running (guest running, memory pinned), report, stop the VM as on SIGTERM and exit 0.")
  boolean exitAfterMap;

  @Option(names = "--cpus", defaultValue = "1", paramLabel = "N", description = "Guest vCPUs.")
  int cpus;

  @Option(names = "--kernel", paramLabel = "FILE", description = "Direct kernel boot: the guest kernel.")
  String kernel;

  @Option(names = "--initrd", paramLabel = "FILE", description = "Its initrd (with --kernel).")
  String initrd;

  @Option(names = "--cmdline", paramLabel = "TEXT", description = "Its command line (with --kernel).")
  String cmdline;

  @Option(names = "--disk", paramLabel = "FILE", description = "Firmware boot from this disk image (raw, or qcow2 by name).")
  String disk;

  @Option(
      names = "--console",
      defaultValue = "stdout",
      paramLabel = "stdout|none",
      description = "stdout: the guest's serial console is copied to this agent's stdout (kubectl logs).")
  String console;

  @Option(names = "--console-log", paramLabel = "FILE", description = "Also copy the serial console to FILE.")
  Path consoleLog;

  @Option(
      names = "--qemu",
      defaultValue = "${env:VFIOVM_QEMU:-qemu-system-x86_64}",
      paramLabel = "PATH",
      description = "QEMU (>= 9.0: iommufd backend and fd passing); default $VFIOVM_QEMU, else on PATH.")
  String qemu;

  @Option(
      names = "--qemu-data",
      paramLabel = "DIR",
      description = "Extra QEMU data directory (-L; repeatable); default the colon-separated $VFIOVM_QEMU_DATA.")
  List<String> qemuData;

  @Option(names = "--accel", defaultValue = "tcg", paramLabel = "tcg|kvm", description = "QEMU accelerator.")
  String accel;

  @Option(
      names = "--powerdown-timeout",
      defaultValue = "10",
      paramLabel = "S",
      description = "Seconds a guest gets to power off (QMP system_powerdown) before quit, then SIGKILL.")
  long powerdownSeconds;

  @Option(
      names = "--control-socket",
      paramLabel = "PATH",
      description = "Serve hot-plug requests (attach-device) on this unix socket (mode 0600, its directory 0700; uid 0 peers only).")
  Path controlSocket;

  @Option(
      names = "--hotplug-slots",
      defaultValue = "2",
      paramLabel = "N",
      description = "Free pcie-root-ports (hotplug0..) QEMU gets at start for hot-plugged devices (iommufd backend).")
  int hotplugSlots;

  @Option(
      names = "--hotplug-timeout",
      defaultValue = "300",
      paramLabel = "S",
      description = "Seconds the guest may take to enable a plugged device or release an unplugged one.")
  long hotplugTimeout;

  /** --vm-command takes every argument after it, options of the command included. */
  static final class RestOfLine implements IParameterConsumer {
    @Override
    public void consumeParameters(Stack<String> args, ArgSpec argSpec, CommandSpec commandSpec) {
      List<String> rest = new ArrayList<>();
      while (!args.isEmpty()) {
        rest.add(args.pop());
      }
      if (rest.isEmpty()) {
        throw new picocli.CommandLine.ParameterException(commandSpec.commandLine(), "--vm-command needs CMD");
      }
      List<String> value = argSpec.getValue();
      if (value == null) {
        value = new ArrayList<>();
        argSpec.setValue(value);
      }
      value.addAll(rest);
    }
  }

  NodeAgentPlan plan() {
    return new NodeAgentPlan(
        vm,
        hostUid,
        Quantities.positiveBytes(memory, "--memory"),
        Quantities.positiveBytes(memlock, "--memlock"),
        devices,
        NodeAgentPlan.parseAccounting(accounting),
        NodeAgentPlan.parseBackend(dmaBackend),
        report,
        reportPod,
        vmCommand,
        vmReadOnly,
        exitAfterMap,
        new NodeAgentPlan.Vmm(
            qemu,
            qemuData != null ? qemuData : envList("VFIOVM_QEMU_DATA"),
            accel,
            cpus,
            new QemuCommandLine.Boot(kernel, initrd, cmdline, disk),
            switch (console) {
              case "stdout" -> true;
              case "none" -> false;
              default -> throw new IllegalArgumentException("--console '" + console + "' must be stdout or none");
            },
            consoleLog,
            powerdownSeconds));
  }

  private static List<String> envList(String name) {
    String value = System.getenv(name);
    return value == null || value.isBlank() ? List.of() : List.of(value.split(":"));
  }

  @Override
  public Integer call() {
    // logs go to stdout: stderr carries only the one line naming a failure's cause
    System.setProperty("org.slf4j.simpleLogger.logFile", "System.out");
    System.setProperty("org.slf4j.simpleLogger.showDateTime", "true");
    NodeAgentPlan plan;
    try {
      plan = plan();
    } catch (IllegalArgumentException e) {
      System.err.println("node-agent: InvalidArgument: " + e.getMessage());
      return 2;
    }
    NodeAgent.Hotplug hotplug;
    try {
      hotplug = new NodeAgent.Hotplug(controlSocket, hotplugSlots, hotplugTimeout);
    } catch (IllegalArgumentException e) {
      System.err.println("node-agent: InvalidArgument: " + e.getMessage());
      return 2;
    }
    NodeAgent agent = new NodeAgent(plan, SysfsDevices.host(), hotplug);
    sun.misc.SignalHandler stop = sig -> agent.requestStop();
    sun.misc.Signal.handle(new sun.misc.Signal("TERM"), stop);
    sun.misc.Signal.handle(new sun.misc.Signal("INT"), stop);
    NodeAgent.Outcome outcome = agent.run();
    if (outcome.failureLine() != null) {
      System.err.println(outcome.failureLine());
    }
    return outcome.exitCode();
  }
}
