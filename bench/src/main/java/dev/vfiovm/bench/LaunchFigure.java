package dev.vfiovm.bench;

import dev.vfiovm.bench.Benchmark.Figure;
import java.nio.file.Path;
import java.util.List;

/** p7: vfiovm's launch chain to a running guest vs the same QEMU command by hand. */
final class LaunchFigure {
  private LaunchFigure() {}

  static List<Figure> measure(Path out, boolean shortRun) throws Exception {
    return List.of();
  }
}
