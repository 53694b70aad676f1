package dev.vfiovm.local;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** The host's RAM as the kernel reports it. */
final class HostMemory {
  private HostMemory() {}

  static long memTotalBytes() throws IOException {
    return parseMemTotal(Files.readString(Path.of("/proc/meminfo")));
  }

  /** MemTotal from /proc/meminfo text (kB units). */
  static long parseMemTotal(String meminfo) {
    for (String line : meminfo.split("\n")) {
      if (line.startsWith("MemTotal:")) {
        String[] parts = line.substring("MemTotal:".length()).trim().split("\\s+");
        return Long.parseLong(parts[0]) * 1024;
      }
    }
    throw new IllegalArgumentException("no MemTotal line in /proc/meminfo");
  }
}
