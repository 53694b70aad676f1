package dev.vfiovm;

import dev.vfiovm.controller.OperatorCommand;
import dev.vfiovm.local.StandaloneCommand;
import dev.vfiovm.node.AttachDeviceCommand;
import dev.vfiovm.node.NodeAgentCommand;
import dev.vfiovm.nodedaemon.NodeDaemonCommand;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/**
 * The one jar's entry point: `operator` (controller), `node-agent` (node pod), `attach-device` (a hot-plugged device's attachment pod), `node-daemon` (the DaemonSet:
 * device plugin and UID audit) and `standalone` (everything on this host, no cluster needed).
 */
@Command(
    name = "vfiovm",
    mixinStandardHelpOptions = true,
    description = "VFIO virtual machines with per-VM pinned-memory accounting.",
    subcommands = {OperatorCommand.class, NodeAgentCommand.class, AttachDeviceCommand.class, NodeDaemonCommand.class, StandaloneCommand.class})
public final class Main {
  public static void main(String[] args) {
    System.exit(commandLine().execute(args));
  }

  static CommandLine commandLine() {
    return new CommandLine(new Main());
  }
}
