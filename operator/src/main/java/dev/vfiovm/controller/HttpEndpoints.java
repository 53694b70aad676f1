package dev.vfiovm.controller;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.Executors;
import java.util.function.Supplier;

/** /healthz, /readyz and /metrics on one port (the JDK's HTTP server is enough for three GETs). */
public final class HttpEndpoints implements AutoCloseable {
  /** An endpoint's answer. */
  public record Answer(int code, String contentType, String body) {
    public static Answer text(boolean ok, String body) {
      return new Answer(ok ? 200 : 503, "text/plain; charset=utf-8", body);
    }
  }

  private final HttpServer server;

  public HttpEndpoints(int port, Supplier<Answer> health, Supplier<Answer> ready, Supplier<Answer> metrics)
      throws IOException {
    server = HttpServer.create(new InetSocketAddress(port), 0);
    server.createContext("/healthz", exchange -> answer(exchange, health));
    server.createContext("/readyz", exchange -> answer(exchange, ready));
    server.createContext("/metrics", exchange -> answer(exchange, metrics));
    server.setExecutor(Executors.newFixedThreadPool(2, r -> {
      Thread t = new Thread(r, "vfiovm-http");
      t.setDaemon(true);
      return t;
    }));
    server.start();
  }

  /** The bound port (useful with port 0). */
  public int port() {
    return server.getAddress().getPort();
  }

  private static void answer(HttpExchange exchange, Supplier<Answer> endpoint) throws IOException {
    Answer answer;
    try {
      answer = endpoint.get();
    } catch (RuntimeException e) {
      answer = Answer.text(false, "error: " + e + "\n");
    }
    byte[] body = answer.body().getBytes(StandardCharsets.UTF_8);
    exchange.getResponseHeaders().set("Content-Type", answer.contentType());
    exchange.sendResponseHeaders(answer.code(), body.length);
    try (OutputStream out = exchange.getResponseBody()) {
      out.write(body);
    }
  }

  @Override
  public void close() {
    server.stop(0);
  }
}
