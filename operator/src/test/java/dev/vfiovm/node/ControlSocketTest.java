package dev.vfiovm.node;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.vfiovm.node.kernel.Kernel;
import dev.vfiovm.node.kernel.Uapi;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ControlSocketTest {
  @Test
  void parsesTheContractsRequests() {
    assertThat(ControlSocket.parse("{\"op\":\"plug\",\"pciAddress\":\"0000:00:03.0\",\"memlockLimitBytes\":268435456}"))
        .isEqualTo(new ControlSocket.Request(ControlSocket.Op.plug, "0000:00:03.0", 268435456L));
    // a bare BB:DD.F gets domain 0000, upper case is normalized
    assertThat(ControlSocket.parse("{\"op\":\"unplug\",\"pciAddress\":\"3B:00.0\",\"memlockLimitBytes\":1}"))
        .isEqualTo(new ControlSocket.Request(ControlSocket.Op.unplug, "0000:3b:00.0", 1L));
    assertThat(ControlSocket.requestJson(ControlSocket.Op.plug, "0000:00:03.0", 5))
        .isEqualTo("{\"op\":\"plug\",\"pciAddress\":\"0000:00:03.0\",\"memlockLimitBytes\":5}");
  }

  @Test
  void refusesMalformedRequestsSayingWhat() {
    assertThatThrownBy(() -> ControlSocket.parse("nope")).hasMessageContaining("not JSON");
    assertThatThrownBy(() -> ControlSocket.parse("[1]")).hasMessageContaining("one JSON object");
    assertThatThrownBy(() -> ControlSocket.parse("{\"op\":\"eject\",\"pciAddress\":\"0000:00:03.0\",\"memlockLimitBytes\":1}"))
        .hasMessageContaining("plug or unplug");
    assertThatThrownBy(() -> ControlSocket.parse("{\"op\":\"plug\",\"memlockLimitBytes\":1}")).hasMessageContaining("pciAddress");
    assertThatThrownBy(() -> ControlSocket.parse("{\"op\":\"plug\",\"pciAddress\":\"0000:00:03.0\",\"memlockLimitBytes\":-4}"))
        .hasMessageContaining("positive");
    assertThatThrownBy(() -> ControlSocket.parse("{\"op\":\"plug\",\"pciAddress\":\"0000:00:03.0\",\"memlockLimitBytes\":\"1Gi\"}"))
        .hasMessageContaining("positive");
    assertThatThrownBy(() -> ControlSocket.parse("{\"op\":\"plug\",\"pciAddress\":\"eth0\",\"memlockLimitBytes\":1}"))
        .hasMessageContaining("not a PCI address");
  }

  @Test
  void repliesAreOneJsonLineEachWay() {
    assertThat(ControlSocket.Reply.ok("Attached").toJson()).isEqualTo("{\"ok\":true,\"state\":\"Attached\"}");
    assertThat(ControlSocket.Reply.error("EBUSY", "in use").toJson()).isEqualTo("{\"ok\":false,\"error\":\"EBUSY\",\"message\":\"in use\"}");
    ControlSocket.Reply r = ControlSocket.Reply.parse("{\"ok\":true,\"state\":\"Attached\",\"previousMemlockLimitBytes\":7}");
    assertThat(r.ok()).isTrue();
    assertThat(r.previousMemlockLimitBytes()).isEqualTo(7L);
    assertThat(ControlSocket.Reply.parse("garbage").error()).isEqualTo("BadReply");
  }

  /** A real socket: 0600 in a 0700 dir, one request per connection, the fd by SCM_RIGHTS is the file sent. */
  @Test
  void servesOneRequestPerConnectionWithTheFdThatCameAlong(@TempDir Path dir) throws Exception {
    Path socket = dir.resolve("ctl/agent.sock");
    Path file = Files.writeString(dir.resolve("cdev"), "x");
    List<String> seen = new ArrayList<>();
    try (ControlSocket s = ControlSocket.open(socket, (req, fd) -> {
      try {
        boolean same = fd >= 0 && Files.getAttribute(Path.of("/proc/self/fd/" + fd), "unix:ino")
            .equals(Files.getAttribute(file, "unix:ino"));
        seen.add(req.op() + " " + req.pciAddress() + " fd=" + (fd >= 0) + " same=" + same);
      } catch (java.io.IOException e) {
        seen.add(e.toString());
      }
      return ControlSocket.Reply.ok("Attached");
    })) {
      assertThat(PosixFilePermissions.toString(Files.getPosixFilePermissions(socket))).isEqualTo("rw-------");
      assertThat(PosixFilePermissions.toString(Files.getPosixFilePermissions(socket.getParent()))).isEqualTo("rwx------");
      int fd = Kernel.open(file.toString(), Uapi.O_RDWR);
      int conn = Kernel.unixConnect(socket.toString());
      try {
        Kernel.sendWithFd(conn, (ControlSocket.requestJson(ControlSocket.Op.plug, "0000:00:04.0", 9) + "\n")
            .getBytes(StandardCharsets.UTF_8), fd);
        assertThat(Kernel.readLine(conn)).isEqualTo("{\"ok\":true,\"state\":\"Attached\"}");
        // one request per connection: the agent closed it
        assertThat(Kernel.readLine(conn)).isNull();
      } finally {
        Kernel.close(conn);
        Kernel.close(fd);
      }
      int conn2 = Kernel.unixConnect(socket.toString());
      try {
        Kernel.sendWithFd(conn2, (ControlSocket.requestJson(ControlSocket.Op.unplug, "0000:00:04.0", 9) + "\n")
            .getBytes(StandardCharsets.UTF_8), -1);
        assertThat(Kernel.readLine(conn2)).isEqualTo("{\"ok\":true,\"state\":\"Attached\"}");
      } finally {
        Kernel.close(conn2);
      }
      Kernel.PeerCred me;
      int c3 = Kernel.unixConnect(socket.toString());
      try {
        me = Kernel.peerCred(c3);
      } finally {
        Kernel.close(c3);
      }
      assertThat(me.pid()).isEqualTo(Kernel.getpid());
    }
    assertThat(seen).containsExactly("plug 0000:00:04.0 fd=true same=true", "unplug 0000:00:04.0 fd=false same=false");
    assertThat(socket).doesNotExist();
  }
}
