package dev.vfiovm.cli;

import picocli.CommandLine.Option;

/** picocli mixin: `--log-level` of the long-running commands (`operator`, `node-daemon`). */
public final class LogLevelOption {
  @Option(names = "--log-level", defaultValue = "${env:VFIOVM_LOG_LEVEL:-info}",
      description = "trace, debug, info, warn or error (env VFIOVM_LOG_LEVEL; default ${DEFAULT-VALUE}).")
  String logLevel;

  public String level() {
    return logLevel;
  }

  /** slf4j-simple reads its level once, when the first logger is made: call this before anything logs. */
  public void apply() {
    System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", logLevel.toLowerCase());
  }
}
