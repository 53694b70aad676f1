package dev.vfiovm.node;

import dev.vfiovm.node.kernel.Kernel;
import dev.vfiovm.node.kernel.KernelException;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Copies what the VM process writes on one fd (the guest's serial console, or QEMU's stderr) to sinks until
 * EOF, on a daemon thread; counts the bytes and keeps the last lines, so a failure can quote QEMU's own words.
 */
final class StreamRelay {
  private static final int KEEP_LINES = 20;

  private final int fd;
  private final List<OutputStream> sinks;
  private final String linePrefix;
  private final AtomicLong bytes = new AtomicLong();
  private final ArrayDeque<String> lastLines = new ArrayDeque<>();
  private final StringBuilder partial = new StringBuilder();
  private final CompletableFuture<Void> firstBytes = new CompletableFuture<>();
  private final CompletableFuture<Void> done = new CompletableFuture<>();

  /** linePrefix: null copies bytes as they come (a console); else each line is written with it. */
  StreamRelay(String name, int fd, List<OutputStream> sinks, String linePrefix) {
    this.fd = fd;
    this.sinks = List.copyOf(sinks);
    this.linePrefix = linePrefix;
    Thread t = new Thread(this::pump, name);
    t.setDaemon(true);
    t.start();
  }

  private void pump() {
    try {
      while (true) {
        byte[] got;
        try {
          got = Kernel.read(fd, 4096);
        } catch (KernelException e) {
          break;
        }
        if (got.length == 0) {
          break;
        }
        bytes.addAndGet(got.length);
        firstBytes.complete(null);
        String text = new String(got, StandardCharsets.UTF_8);
        List<String> complete = lines(text);
        if (linePrefix == null) {
          write(got);
        } else {
          for (String line : complete) {
            write((linePrefix + line + "\n").getBytes(StandardCharsets.UTF_8));
          }
        }
      }
      synchronized (this) {
        if (partial.length() > 0) {
          keep(partial.toString());
          if (linePrefix != null) {
            write((linePrefix + partial + "\n").getBytes(StandardCharsets.UTF_8));
          }
        }
      }
    } finally {
      Kernel.closeQuietly(fd);
      done.complete(null);
    }
  }

  private synchronized List<String> lines(String text) {
    List<String> out = new ArrayList<>();
    for (char c : text.toCharArray()) {
      if (c == '\n') {
        String line = partial.toString().replace("\r", "");
        partial.setLength(0);
        keep(line);
        out.add(line);
      } else {
        partial.append(c);
      }
    }
    return out;
  }

  private void keep(String line) {
    if (line.isBlank()) {
      return;
    }
    lastLines.addLast(line);
    while (lastLines.size() > KEEP_LINES) {
      lastLines.removeFirst();
    }
  }

  private void write(byte[] data) {
    for (OutputStream sink : sinks) {
      try {
        sink.write(data);
        sink.flush();
      } catch (IOException e) {
        // a sink that fails (a full disk for the console log) must not stop the others
      }
    }
  }

  long bytes() {
    return bytes.get();
  }

  CompletableFuture<Void> firstBytes() {
    return firstBytes;
  }

  /** Completes at EOF, once everything read has been written out. */
  CompletableFuture<Void> done() {
    return done;
  }

  synchronized List<String> lastLines() {
    return List.copyOf(lastLines);
  }
}
