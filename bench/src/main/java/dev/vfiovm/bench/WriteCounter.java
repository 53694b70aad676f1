package dev.vfiovm.bench;

import io.fabric8.kubernetes.client.http.BasicBuilder;
import io.fabric8.kubernetes.client.http.HttpRequest;
import io.fabric8.kubernetes.client.http.Interceptor;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.LongAdder;

/**
 * Counts a client's API writes by kind, from the client's side: a fabric8 HTTP interceptor sees every request
 * before it is sent (retries included). Reads (GET, watches) are not counted.
 */
final class WriteCounter implements Interceptor {
  static final String POD_CREATE = "pod_create";
  static final String STATUS = "status_write";
  static final String PATCH = "patch";
  static final String EVENT = "event";
  static final String DELETE = "delete";
  static final String OTHER = "other_write";

  private final Map<String, LongAdder> counts = new ConcurrentHashMap<>();

  @Override
  public void before(BasicBuilder builder, HttpRequest request, RequestTags tags) {
    String query = request.uri().getRawQuery();
    // fabric8 sets the body's content type after interceptors run; a server-side apply carries fieldManager
    boolean apply = query != null && query.contains("fieldManager=") && query.contains("force=");
    String kind = classify(request.method(), request.uri().getPath(), apply ? "application/apply-patch+yaml"
        : request.header("Content-Type"));
    if (kind != null) {
      counts.computeIfAbsent(kind, k -> new LongAdder()).increment();
    }
  }

  /**
   * The kind of write of one request, or null for a read. A server-side apply of a pod counts as its creation
   * (the operator applies a node pod only to create it).
   */
  static String classify(String method, String path, String contentType) {
    String m = method.toUpperCase();
    if (m.equals("GET") || m.equals("HEAD") || m.equals("OPTIONS")) {
      return null;
    }
    String[] parts = path.replaceAll("/+$", "").split("/");
    String resource = null;
    String sub = null;
    for (int i = 0; i < parts.length; i++) {
      // /api/v1/namespaces/NS/pods/NAME/status, /apis/vfiovm.dev/v1/namespaces/NS/vfiovms/NAME/status
      if (i >= 2 && parts[i - 2].equals("namespaces") || i >= 1 && parts[i - 1].matches("v1|v1beta1")) {
        if (!parts[i].equals("namespaces")) {
          resource = parts[i];
          sub = i + 2 < parts.length ? parts[i + 2] : null;
          break;
        }
      }
    }
    if (m.equals("DELETE")) {
      return DELETE;
    }
    if ("events".equals(resource)) {
      return EVENT;
    }
    if ("status".equals(sub)) {
      return STATUS;
    }
    if ("pods".equals(resource) && (m.equals("POST")
        || (m.equals("PATCH") && contentType != null && contentType.contains("apply-patch")))) {
      return POD_CREATE;
    }
    if (m.equals("PATCH") || m.equals("PUT")) {
      return PATCH;
    }
    return OTHER;
  }

  Map<String, Long> snapshot() {
    Map<String, Long> out = new TreeMap<>();
    counts.forEach((k, v) -> out.put(k, v.sum()));
    return out;
  }

  static long total(Map<String, Long> counts) {
    return counts.values().stream().mapToLong(Long::longValue).sum();
  }

  static Map<String, Long> minus(Map<String, Long> after, Map<String, Long> before) {
    Map<String, Long> out = new TreeMap<>();
    after.forEach((k, v) -> out.put(k, v - before.getOrDefault(k, 0L)));
    return out;
  }
}
