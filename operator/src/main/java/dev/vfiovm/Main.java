package dev.vfiovm;

import dev.vfiovm.controller.OperatorCommand;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/** The one jar's entry point: `operator` (controller) and `node-agent` (privileged node pod). */
@Command(
    name = "vfiovm",
    mixinStandardHelpOptions = true,
    description = "VFIO virtual machines with per-VM pinned-memory accounting.",
    subcommands = {OperatorCommand.class})
public final class Main {
  public static void main(String[] args) {
    System.exit(commandLine().execute(args));
  }

  static CommandLine commandLine() {
    return new CommandLine(new Main());
  }
}
