package dev.vfiovm.node;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/** What /proc says about a process: its credentials, user namespace map and pinned/locked memory. */
public record ProcStatus(List<Long> uids, List<Long> gids, long vmPinBytes, long vmLckBytes, String uidMap) {

  /** Reads /proc/PID/status and uid_map; IOException when the process is gone. */
  public static ProcStatus of(int pid) throws IOException {
    Path dir = Path.of("/proc", Integer.toString(pid));
    List<String> lines = Files.readAllLines(dir.resolve("status"));
    String uidMap = Files.readString(dir.resolve("uid_map")).trim().replaceAll("\\s+", " ");
    return parse(lines, uidMap);
  }

  /**
   * Bytes an io_uring holds registered (pinned, charged to its user), from the kernel's fdinfo of that ring
   * as seen in process PID at fd RING: the "UserBufs" lines {@code N: 0xADDR/LEN}.
   */
  public static long ioUringRegisteredBytes(int pid, int ring) throws IOException {
    return registeredBytes(Files.readAllLines(Path.of("/proc", Integer.toString(pid), "fdinfo", Integer.toString(ring))));
  }

  static long registeredBytes(List<String> fdinfo) {
    long total = 0;
    boolean inBufs = false;
    for (String line : fdinfo) {
      if (line.startsWith("UserBufs:")) {
        inBufs = true;
        continue;
      }
      java.util.regex.Matcher m = BUF.matcher(line);
      if (inBufs && m.matches()) {
        total += Long.parseLong(m.group(1));
      } else if (inBufs) {
        inBufs = false;
      }
    }
    return total;
  }

  private static final java.util.regex.Pattern BUF = java.util.regex.Pattern.compile("\\s*\\d+: 0x[0-9a-f]+/(\\d+)\\s*");

  static ProcStatus parse(List<String> statusLines, String uidMap) {
    List<Long> uids = List.of();
    List<Long> gids = List.of();
    long pin = 0;
    long lck = 0;
    for (String line : statusLines) {
      int colon = line.indexOf(':');
      if (colon < 0) {
        continue;
      }
      String key = line.substring(0, colon);
      String[] v = line.substring(colon + 1).trim().split("\\s+");
      switch (key) {
        case "Uid" -> uids = java.util.Arrays.stream(v).map(Long::parseLong).toList();
        case "Gid" -> gids = java.util.Arrays.stream(v).map(Long::parseLong).toList();
        case "VmPin" -> pin = Long.parseLong(v[0]) * 1024;
        case "VmLck" -> lck = Long.parseLong(v[0]) * 1024;
        default -> {}
      }
    }
    return new ProcStatus(uids, gids, pin, lck, uidMap);
  }
}
