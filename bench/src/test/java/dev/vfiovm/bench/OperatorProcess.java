package dev.vfiovm.bench;

import java.io.IOException;
import java.lang.ProcessBuilder.Redirect;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * The operator as its own JVM, exactly as it is deployed: {@code java -jar vfiovm.jar operator ...} against the
 * fixture's API server (KUBECONFIG), its output appended to one log file across restarts. {@link #kill9()} is
 * SIGKILL ({@link Process#destroyForcibly()} on Linux): no shutdown hook, no clean close.
 */
final class OperatorProcess implements AutoCloseable {
  final String name;
  final Path log;
  private final Path kubeconfig;
  private final List<String> args;
  private volatile Process process;
  int starts;
  int kills;
  volatile int httpPort;

  OperatorProcess(String name, Path dir, Path kubeconfig, List<String> args) {
    this.name = name;
    this.log = dir.resolve("operator-" + name + ".log");
    this.kubeconfig = kubeconfig;
    this.args = args;
  }

  synchronized OperatorProcess start() throws IOException {
    List<String> command = new ArrayList<>(List.of("java", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
        "-jar", System.getenv("VFIOVM_JAR"), "operator"));
    command.addAll(args);
    httpPort = FaultCluster.freePort();
    command.addAll(List.of("--http-port", Integer.toString(httpPort)));
    ProcessBuilder pb = new ProcessBuilder(command).redirectErrorStream(true).redirectOutput(Redirect.appendTo(log.toFile()));
    pb.environment().put("KUBECONFIG", kubeconfig.toString());
    pb.environment().put("POD_NAME", name); // the leader-election identity
    pb.environment().remove("KUBERNETES_SERVICE_HOST");
    Files.writeString(log, "---- start " + (starts + 1) + " of " + name + ": " + String.join(" ", command) + "\n",
        java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.APPEND);
    process = pb.start();
    starts++;
    return this;
  }

  /** SIGKILL, and wait until the process is gone. */
  synchronized void kill9() {
    Process p = process;
    if (p != null && p.isAlive()) {
      p.destroyForcibly();
      try {
        p.waitFor(30, TimeUnit.SECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
      kills++;
    }
  }

  /** The operator answers /readyz with 200 (started, informers healthy, leading or standby). */
  boolean ready() {
    try {
      return java.net.http.HttpClient.newHttpClient().send(java.net.http.HttpRequest.newBuilder(
              java.net.URI.create("http://127.0.0.1:" + httpPort + "/readyz")).timeout(java.time.Duration.ofSeconds(2)).build(),
          java.net.http.HttpResponse.BodyHandlers.discarding()).statusCode() == 200;
    } catch (IOException e) {
      return false;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return false;
    }
  }

  boolean alive() {
    Process p = process;
    return p != null && p.isAlive();
  }

  long pid() {
    return process.pid();
  }

  String logText() {
    try {
      return Files.readString(log);
    } catch (IOException e) {
      return "";
    }
  }

  /** Lines of the log containing {@code text}. */
  List<String> logLines(String text) {
    return logText().lines().filter(l -> l.contains(text)).toList();
  }

  @Override
  public void close() {
    kill9();
  }
}
