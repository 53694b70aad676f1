package dev.vfiovm.bench;

import com.sun.jna.Pointer;
import dev.vfiovm.node.kernel.Iommufd;
import dev.vfiovm.node.kernel.Kernel;
import dev.vfiovm.node.kernel.VfioDevice;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * p6 in the iommufd guest (docs/performance.md): the iommufd pin path through the project's JNA facade
 * ({@link Kernel}, {@link Iommufd}, {@link VfioDevice}) - memfd_create, ftruncate, mmap(MAP_SHARED), open
 * /dev/iommu, IOMMU_IOAS_ALLOC, open the device's VFIO cdev, VFIO_DEVICE_BIND_IOMMUFD,
 * VFIO_DEVICE_ATTACH_IOMMUFD_PT, IOMMU_IOAS_MAP of the whole memfd - against bench/native/pin.c making the same
 * syscalls on the same size ({@code pin iommufd SIZE 1 CDEV}), in interleaved rounds of this one invocation.
 * Every round of either side is checked against the kernel's own view: the process's VmPin
 * (/proc/self/status) is SIZE higher once mapped and back where it was after unmap and close; a round that
 * pinned anything else fails the run, so the figure cannot be of nothing.
 *
 * <p>Needs root with a VFIO device bound to vfio-pci and /dev/iommu: run inside the iommufd guest by
 * e2e/iommufd/p6-pin.sh (a step of the guest tier's scenarios.sh, or alone through boot-guest.sh, which is what
 * {@code bash bench/run.sh --p6-guest} does). Depends on nothing but the vfiovm jar (JNA and the facade), so the
 * tier compiles it on the host next to the agent jar.
 *
 * <p>Usage: {@code GuestPin OUT_JSON PIN_BINARY BDF [SIZE_BYTES [ROUNDS]]}. Writes one JSON object to OUT_JSON
 * and prints a {@code P6-GUEST} line.
 */
public final class GuestPin {
  private GuestPin() {}

  /** One pin of either side: ns to pin, and VmPin (bytes) before, once mapped, after unmap + close. */
  record Round(long ns, long before, long mapped, long after) {
    boolean pinned(long size) {
      return mapped - before == size && after == before;
    }
  }

  public static void main(String[] args) throws Exception {
    if (args.length < 3) {
      System.err.println("usage: GuestPin OUT_JSON PIN_BINARY BDF [SIZE_BYTES [ROUNDS]]");
      System.exit(2);
    }
    Path outJson = Path.of(args[0]);
    Path pin = Path.of(args[1]);
    String bdf = args[2];
    long size = args.length > 3 ? Long.parseLong(args[3]) : 1L << 30;
    int rounds = args.length > 4 ? Integer.parseInt(args[4]) : 3;
    String cdev = cdevOf(bdf);
    // root in the guest raises its own limit (hard and soft) to hold one round's pins with room: iommufd charges
    // RLIMIT_MEMLOCK unless the caller has CAP_IPC_LOCK; pin.c inherits it
    long limit = 2 * size + (64L << 20);
    Kernel.setOwnMemlockLimit(limit, limit);
    // JNA's first calls load classes and native stubs: one small untimed pin, as any VM-side process would
    // have done already before its first real map
    Round warm = javaPin(2L << 20, cdev);
    // and what pins when: an IOAS_MAP with no device attached pins nothing; the attach pins what is mapped
    long[] lazy = mapBeforeAttach(2L << 20, cdev);
    List<Round> java = new ArrayList<>();
    List<Round> c = new ArrayList<>();
    long t0 = System.nanoTime();
    for (int r = 0; r < rounds; r++) {
      // interleaved: Java then C in each round, so a change of load hits both sides alike
      java.add(javaPin(size, cdev));
      c.add(cPin(pin, size, cdev));
      System.out.printf("P6-GUEST round %d: java %.1f ms, c %.1f ms%n", r, java.get(r).ns() / 1e6,
          c.get(r).ns() / 1e6);
    }
    double seconds = (System.nanoTime() - t0) / 1e9;
    boolean pinsSeen = warm.pinned(2L << 20) && java.stream().allMatch(x -> x.pinned(size))
        && c.stream().allMatch(x -> x.pinned(size));
    double javaNs = median(java);
    double cNs = median(c);
    String json = json(size, rounds, cdev, bdf, limit, java, c, javaNs, cNs, pinsSeen, seconds, lazy);
    Files.createDirectories(outJson.toAbsolutePath().getParent());
    Files.writeString(outJson, json);
    System.out.printf(Locale.ROOT, "P6-GUEST p6_pin_ratio=%.3f java_ms=%.1f c_ms=%.1f s_per_gib_c=%.2f "
        + "pins_seen=%s written=%s%n", javaNs / cNs, javaNs / 1e6, cNs / 1e6, cNs / 1e9 * (1L << 30) / size, pinsSeen, outJson);
    if (!pinsSeen) {
      System.err.println("P6-GUEST a round did not pin exactly " + size + " bytes (VmPin): " + java + " " + c);
      System.exit(1);
    }
  }

  /** /dev/vfio/devices/vfioN of a PCI device bound to vfio-pci (its sysfs vfio-dev entry). */
  static String cdevOf(String bdf) throws IOException {
    Path dir = Path.of("/sys/bus/pci/devices", bdf, "vfio-dev");
    try (Stream<Path> s = Files.list(dir)) {
      return "/dev/vfio/devices/" + s.map(p -> p.getFileName().toString()).filter(n -> n.startsWith("vfio"))
          .findFirst().orElseThrow(() -> new IllegalStateException(bdf + ": no VFIO cdev in " + dir));
    }
  }

  /** The VM-side iommufd pin path through the facade, timed from memfd_create to the end of IOAS_MAP. */
  static Round javaPin(long size, String cdev) throws IOException {
    long before = vmPinBytes();
    long t0 = System.nanoTime();
    int memfd = Kernel.memfdCreate("vfiovm-guest", size);
    Pointer guest = Kernel.mmap(size, memfd);
    Iommufd iommufd = Iommufd.open();
    int ioas = iommufd.allocIoas();
    VfioDevice device = VfioDevice.open(cdev);
    device.bind(iommufd);
    device.attach(ioas);
    long iova = iommufd.map(ioas, guest, size);
    long ns = System.nanoTime() - t0;
    long mapped = vmPinBytes();
    iommufd.unmap(ioas, iova, size);
    Kernel.close(device.fd());
    Kernel.close(iommufd.fd());
    Kernel.munmap(guest, size);
    Kernel.close(memfd);
    return new Round(ns, before, mapped, vmPinBytes());
  }

  /**
   * IOMMU_IOAS_MAP of SIZE into an IOAS no device is attached to, then bind + attach: {VmPin growth after the
   * map, VmPin growth after the attach} (iommufd pins when a domain needs the pages, not at map time).
   */
  static long[] mapBeforeAttach(long size, String cdev) throws IOException {
    long before = vmPinBytes();
    int memfd = Kernel.memfdCreate("vfiovm-guest", size);
    Pointer guest = Kernel.mmap(size, memfd);
    Iommufd iommufd = Iommufd.open();
    int ioas = iommufd.allocIoas();
    long iova = iommufd.map(ioas, guest, size);
    long afterMap = vmPinBytes() - before;
    VfioDevice device = VfioDevice.open(cdev);
    device.bind(iommufd);
    device.attach(ioas);
    long afterAttach = vmPinBytes() - before;
    iommufd.unmap(ioas, iova, size);
    Kernel.close(device.fd());
    Kernel.close(iommufd.fd());
    Kernel.munmap(guest, size);
    Kernel.close(memfd);
    System.out.printf("P6-GUEST map before attach: VmPin +%d after IOAS_MAP, +%d after attach (%d mapped)%n",
        afterMap, afterAttach, size);
    return new long[] {afterMap, afterAttach};
  }

  /** pin.c's iommufd mode, one iteration: its own timing and its own VmPin readings. */
  static Round cPin(Path pin, long size, String cdev) throws Exception {
    Process p = new ProcessBuilder(pin.toString(), "iommufd", Long.toString(size), "1", cdev)
        .redirectErrorStream(true).start();
    String output = new String(p.getInputStream().readAllBytes()).trim();
    if (!p.waitFor(600, TimeUnit.SECONDS) || p.exitValue() != 0) {
      throw new IllegalStateException("pin.c failed: " + output);
    }
    return parseC(output);
  }

  /** "NS ns BEFORE kB MAPPED kB AFTER kB" (pin.c) as a Round in bytes. */
  static Round parseC(String line) {
    String[] f = line.trim().split("\\s+");
    if (f.length != 8 || !f[0].equals("NS") || !f[2].equals("BEFORE") || !f[4].equals("MAPPED")
        || !f[6].equals("AFTER")) {
      throw new IllegalStateException("pin.c said: " + line);
    }
    return new Round(Long.parseLong(f[1]), Long.parseLong(f[3]) * 1024, Long.parseLong(f[5]) * 1024,
        Long.parseLong(f[7]) * 1024);
  }

  /** VmPin of this process in bytes, from /proc/self/status. */
  static long vmPinBytes() throws IOException {
    return vmPinBytes(Files.readString(Path.of("/proc/self/status")));
  }

  static long vmPinBytes(String status) {
    for (String line : status.split("\n")) {
      if (line.startsWith("VmPin:")) {
        return Long.parseLong(line.substring(6).trim().split("\\s+")[0]) * 1024;
      }
    }
    throw new IllegalStateException("no VmPin in /proc/self/status");
  }

  static double median(List<Round> rounds) {
    long[] ns = rounds.stream().mapToLong(Round::ns).sorted().toArray();
    return ns.length % 2 == 1 ? ns[ns.length / 2] : (ns[ns.length / 2 - 1] + ns[ns.length / 2]) / 2.0;
  }

  private static String json(long size, int rounds, String cdev, String bdf, long limit, List<Round> java,
      List<Round> c, double javaNs, double cNs, boolean pinsSeen, double seconds, long[] lazy) throws IOException {
    String[] load = Files.readString(Path.of("/proc/loadavg")).trim().split("\\s+");
    double gib = (double) size / (1L << 30);
    return String.format(Locale.ROOT, "{\"figure\":\"p6_pin_ratio\",\"where\":\"iommufd guest\","
        + "\"bytes\":%d,\"rounds\":%d,\"device\":\"%s\",\"cdev\":\"%s\",\"memlockLimit\":%d,"
        + "\"java_ms\":%.3f,\"c_ms\":%.3f,\"ratio\":%.4f,\"s_per_gib_java\":%.4f,\"s_per_gib_c\":%.4f,"
        + "\"pins_seen\":%s,\"seconds\":%.2f,\"java_rounds\":%s,\"c_rounds\":%s,"
        + "\"map_before_attach\":{\"bytes\":%d,\"vmPinAfterMap\":%d,\"vmPinAfterAttach\":%d},"
        + "\"cores\":%d,\"load1\":%s,\"load5\":%s,\"load15\":%s,\"kernel\":\"%s\"}%n",
        size, rounds, bdf, cdev, limit, javaNs / 1e6, cNs / 1e6, javaNs / cNs, javaNs / 1e9 / gib, cNs / 1e9 / gib,
        pinsSeen, seconds, roundsJson(java), roundsJson(c), 2L << 20, lazy[0], lazy[1],
        Runtime.getRuntime().availableProcessors(), load[0], load[1], load[2], System.getProperty("os.version"));
  }

  private static String roundsJson(List<Round> rounds) {
    return Arrays.toString(rounds.stream().map(r -> String.format(Locale.ROOT,
        "{\"ms\":%.3f,\"vmPinBefore\":%d,\"vmPinMapped\":%d,\"vmPinAfter\":%d}", r.ns() / 1e6, r.before(), r.mapped(),
        r.after())).toArray());
  }
}
