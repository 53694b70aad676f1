package dev.vfiovm.cli;

import picocli.CommandLine.Option;

/**
 * picocli mixin: the VM host-UID range, shared by `operator` (which hands UIDs out of it) and `node-daemon`
 * (which audits it); both read the same environment variables, so one chart value sets both. A command words
 * the descriptions its own way through its resource bundle (keys {@code uid-range-start}, {@code uid-range-size}).
 */
public final class UidRangeOptions {
  @Option(names = "--uid-range-start", defaultValue = "${env:VFIOVM_UID_RANGE_START:-1879048192}",
      descriptionKey = "uid-range-start",
      description = "First host UID given to VMs (env VFIOVM_UID_RANGE_START; default ${DEFAULT-VALUE} = 0x70000000).")
  long uidRangeStart;

  @Option(names = "--uid-range-size", defaultValue = "${env:VFIOVM_UID_RANGE_SIZE:-65536}",
      descriptionKey = "uid-range-size",
      description = "Number of host UIDs in the range (env VFIOVM_UID_RANGE_SIZE; default ${DEFAULT-VALUE}).")
  long uidRangeSize;

  public long start() {
    return uidRangeStart;
  }

  public long size() {
    return uidRangeSize;
  }
}
