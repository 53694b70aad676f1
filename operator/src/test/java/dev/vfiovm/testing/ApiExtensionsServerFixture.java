package dev.vfiovm.testing;

import dev.vfiovm.api.CrdInstaller;
import io.fabric8.kubernetes.api.model.apiextensions.v1.CustomResourceDefinition;
import io.fabric8.kubernetes.client.Config;
import io.fabric8.kubernetes.client.ConfigBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import io.fabric8.kubernetes.client.utils.Serialization;
import java.io.IOException;
import java.io.InputStream;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * A current API server for the CRD: upstream apiextensions-apiserver v1.36.4 and its own etcd 3.5.30 (built by
 * hack/setup.d/25-apiextensions-apiserver.sh into the system property {@code vfiovm.apiext.dir}), started
 * once per test JVM on loopback ports. It serves CRDs and custom resources with real CEL (transition rules
 * too), list-type map keys, server-side apply and the status subresource, but no core API (no namespaces,
 * pods, RBAC: objects go into any namespace name) and no discovery root. Missing binaries skip (CI=true: fail).
 *
 * <pre>
 * KubernetesClient client = ApiExtensionsServerFixture.newClient(); // starts etcd + server on first use
 * ApiExtensionsServerFixture.installCrd(client, "META-INF/fabric8/vfiovms.vfiovm.dev-v1.yml");
 * </pre>
 */
public final class ApiExtensionsServerFixture {
  public static final String DIR_PROPERTY = "vfiovm.apiext.dir";
  private static final Duration STARTUP = Duration.ofSeconds(120);

  private static String url;
  private static Path work;
  private static final List<Process> processes = new ArrayList<>();

  private ApiExtensionsServerFixture() {}

  /** The binaries' directory (system property, else VFIOVM_APIEXT_DIR, else the setup step's default). */
  public static Path binariesDir() {
    String dir = System.getProperty(DIR_PROPERTY);
    if (dir == null || dir.isBlank()) {
      dir = System.getenv("VFIOVM_APIEXT_DIR");
    }
    if (dir == null || dir.isBlank()) {
      dir = System.getProperty("user.home") + "/.cache/vfiovm/apiextensions-apiserver";
    }
    return Path.of(dir);
  }

  private static Config config() {
    return new ConfigBuilder(Config.empty())
        .withMasterUrl(url)
        .withTrustCerts(true)
        .withClientCertFile(work.resolve("admin.crt").toString())
        .withClientKeyFile(work.resolve("admin.key").toString())
        .withRequestTimeout(30_000)
        .build();
  }

  /** A new client for the server (the caller closes it); starts the server on first call. */
  public static KubernetesClient newClient() {
    start();
    return new KubernetesClientBuilder().withConfig(config()).build();
  }

  private static synchronized void start() {
    Path dir = binariesDir();
    Path server = dir.resolve("apiextensions-apiserver");
    Path etcd = dir.resolve("etcd");
    Prerequisites.require(Files.isExecutable(server) && Files.isExecutable(etcd),
        "apiextensions-apiserver and etcd under " + dir + " (system property " + DIR_PROPERTY
            + "; build them with bash hack/setup.sh 25-apiextensions-apiserver)");
    if (url != null) {
      return;
    }
    try {
      work = Files.createTempDirectory("apiext");
      Runtime.getRuntime().addShutdownHook(new Thread(ApiExtensionsServerFixture::stop, "apiext-stop"));
      certificates();
      int etcdClient = freePort();
      int etcdPeer = freePort();
      int securePort = freePort();
      String etcdUrl = "http://127.0.0.1:" + etcdClient;
      String peerUrl = "http://127.0.0.1:" + etcdPeer;
      launch("etcd", List.of(etcd.toString(), "--data-dir=" + work.resolve("etcd"),
          "--listen-client-urls=" + etcdUrl, "--advertise-client-urls=" + etcdUrl,
          "--listen-peer-urls=" + peerUrl, "--initial-advertise-peer-urls=" + peerUrl,
          "--initial-cluster=default=" + peerUrl, "--log-level=warn"));
      url = "https://127.0.0.1:" + securePort;
      Files.writeString(work.resolve("self.kubeconfig"), """
          apiVersion: v1
          kind: Config
          clusters:
          - name: self
            cluster: {server: "%s", insecure-skip-tls-verify: true}
          users:
          - name: admin
            user: {client-certificate: "%s", client-key: "%s"}
          contexts:
          - name: self
            context: {cluster: self, user: admin}
          current-context: self
          """.formatted(url, work.resolve("admin.crt"), work.resolve("admin.key")));
      String kubeconfig = work.resolve("self.kubeconfig").toString();
      launch("apiextensions-apiserver", List.of(server.toString(), "--etcd-servers=" + etcdUrl,
          "--secure-port=" + securePort, "--bind-address=127.0.0.1", "--cert-dir=" + work.resolve("serving"),
          "--client-ca-file=" + work.resolve("ca.crt"), "--kubeconfig=" + kubeconfig,
          "--authentication-kubeconfig=" + kubeconfig, "--authorization-kubeconfig=" + kubeconfig,
          "--authentication-skip-lookup", "--enable-priority-and-fairness=false",
          "--authorization-always-allow-paths=/healthz,/readyz,/livez,/version",
          "--disable-admission-plugins=NamespaceLifecycle,MutatingAdmissionPolicy,MutatingAdmissionWebhook,"
              + "ValidatingAdmissionPolicy,ValidatingAdmissionWebhook"));
      awaitLive();
    } catch (IOException e) {
      stop();
      url = null;
      throw new IllegalStateException("could not start apiextensions-apiserver: " + e.getMessage(), e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }

  /** A CA and an admin client certificate (group system:masters), with the openssl CLI. */
  private static void certificates() throws IOException, InterruptedException {
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=vfiovm-test-ca",
        "-keyout", "ca.key", "-out", "ca.crt");
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/O=system:masters/CN=admin",
        "-keyout", "admin.key", "-out", "admin.csr");
    run("openssl", "x509", "-req", "-in", "admin.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-out", "admin.crt");
  }

  private static void run(String... command) throws IOException, InterruptedException {
    Process p = new ProcessBuilder(command).directory(work.toFile()).redirectErrorStream(true)
        .redirectOutput(work.resolve("openssl.log").toFile()).start();
    if (!p.waitFor(60, TimeUnit.SECONDS) || p.exitValue() != 0) {
      p.destroyForcibly();
      throw new IOException(String.join(" ", command) + " failed: " + Files.readString(work.resolve("openssl.log")));
    }
  }

  private static void launch(String name, List<String> command) throws IOException {
    Process p = new ProcessBuilder(command).directory(work.toFile()).redirectErrorStream(true)
        .redirectOutput(work.resolve(name + ".log").toFile()).start();
    processes.add(p);
  }

  /** Polls /livez (/readyz never turns ready: no core API to sync informers from) within STARTUP. */
  private static void awaitLive() throws IOException, InterruptedException {
    long deadline = System.nanoTime() + STARTUP.toNanos();
    String last = "no answer";
    try (KubernetesClient client = new KubernetesClientBuilder().withConfig(config()).build()) {
      while (System.nanoTime() < deadline) {
        for (Process p : processes) {
          if (!p.isAlive()) {
            throw new IOException("a server process exited " + p.exitValue() + "; logs in " + work + ": "
                + tail(work.resolve("apiextensions-apiserver.log")) + tail(work.resolve("etcd.log")));
          }
        }
        try {
          String livez = client.raw(url + "/livez");
          if ("ok".equals(livez == null ? null : livez.strip())) {
            return;
          }
          last = String.valueOf(livez);
        } catch (RuntimeException e) {
          last = e.getMessage();
        }
        Thread.sleep(500);
      }
    }
    throw new IOException("apiextensions-apiserver not live within " + STARTUP.toSeconds() + " s (last: " + last
        + "); logs in " + work + ": " + tail(work.resolve("apiextensions-apiserver.log")));
  }

  private static String tail(Path log) {
    try {
      String s = Files.readString(log);
      return s.length() > 2000 ? s.substring(s.length() - 2000) : s;
    } catch (IOException e) {
      return "";
    }
  }

  private static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
      return s.getLocalPort();
    }
  }

  private static synchronized void stop() {
    for (Process p : processes) {
      p.destroy();
    }
    for (Process p : processes) {
      try {
        if (!p.waitFor(10, TimeUnit.SECONDS)) {
          p.destroyForcibly();
        }
      } catch (InterruptedException e) {
        p.destroyForcibly();
        Thread.currentThread().interrupt();
      }
    }
    processes.clear();
    if (work != null) {
      try (var paths = Files.walk(work)) {
        paths.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
      } catch (IOException e) {
        // a temp dir left behind
      }
    }
  }

  /** Creates (server-side applies) a CRD from a classpath resource and waits until it is established. */
  public static CustomResourceDefinition installCrd(KubernetesClient client, String resource) {
    try (InputStream in = ApiExtensionsServerFixture.class.getClassLoader().getResourceAsStream(resource)) {
      if (in == null) {
        throw new IllegalStateException(resource + " is not on the test classpath; run mvn process-classes first");
      }
      return CrdInstaller.install(client, Serialization.unmarshal(in, CustomResourceDefinition.class), "apiext-fixture");
    } catch (IOException e) {
      throw new IllegalStateException(e);
    }
  }

  /** The server's /version gitVersion (e.g. v1.36.4). */
  public static String version(KubernetesClient client) {
    return client.getKubernetesVersion().getGitVersion();
  }
}
