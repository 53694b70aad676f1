package dev.vfiovm.nodedaemon;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.TreeSet;

/**
 * The UID audit's scan: which UIDs of a range some process on the host still holds, as the kernel says in
 * /proc/PID/status ({@code Uid:} real, effective, saved, fs). With {@code hostPID: true} the daemon's /proc is
 * the host's.
 */
public final class UidScan {
  private UidScan() {}

  /** The four UIDs of a /proc/PID/status text (real, effective, saved, fs); empty when there is no Uid line. */
  public static List<Long> uidsOf(String status) {
    for (String line : status.split("\n")) {
      if (line.startsWith("Uid:")) {
        List<Long> uids = new ArrayList<>();
        for (String word : line.substring(4).trim().split("\\s+")) {
          if (!word.isEmpty()) {
            uids.add(Long.parseLong(word));
          }
        }
        return uids;
      }
    }
    return List.of();
  }

  /** Sorted, distinct: every UID in [start, start+size) among the UIDs of the given status texts. */
  public static List<Long> liveUids(Iterable<String> statuses, long start, long size) {
    TreeSet<Long> live = new TreeSet<>();
    for (String status : statuses) {
      for (long uid : uidsOf(status)) {
        if (uid >= start && uid - start < size) {
          live.add(uid);
        }
      }
    }
    return List.copyOf(live);
  }

  /** The status texts of every process under {@code proc} (a process gone while reading is skipped). */
  public static List<String> statuses(Path proc) {
    List<String> statuses = new ArrayList<>();
    try (DirectoryStream<Path> dirs = Files.newDirectoryStream(proc, p -> p.getFileName().toString().matches("\\d+"))) {
      for (Path dir : dirs) {
        try {
          statuses.add(Files.readString(dir.resolve("status")));
        } catch (NoSuchFileException e) {
          // exited between the listing and the read: it holds nothing any more
        } catch (IOException e) {
          if (Files.exists(dir)) {
            throw new UncheckedIOException("cannot read " + dir.resolve("status"), e);
          }
        }
      }
    } catch (IOException e) {
      throw new UncheckedIOException("cannot list " + proc, e);
    }
    return statuses;
  }

  /** Scans {@code proc} now. */
  public static List<Long> scan(Path proc, long start, long size) {
    return liveUids(statuses(proc), start, size);
  }
}
