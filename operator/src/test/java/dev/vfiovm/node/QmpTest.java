package dev.vfiovm.node;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.vfiovm.node.kernel.Kernel;
import org.junit.jupiter.api.Test;

class QmpTest {
  @Test
  void findsAssignedDevicesBehindRootPorts() throws Exception {
    String reply = """
        [{"bus": 0, "devices": [
          {"qdev_id": "", "slot": 0},
          {"qdev_id": "rp0", "slot": 1, "pci_bridge": {"bus": {"number": 1}, "devices": [
            {"qdev_id": "hostdev0", "slot": 0, "id": {"vendor": 32902, "device": 4307}}]}}]}]""";
    assertThat(Qmp.pciDeviceIds(new ObjectMapper().readTree(reply))).containsExactly("rp0", "hostdev0");
  }

  @Test
  void talksQmpOverASocketPairKeepingEvents() {
    int[] pair = Kernel.socketPair();
    try (Qmp qmp = new Qmp(pair[0])) {
      // the "QEMU" side answers in advance: greeting, capabilities, an event, then the reply
      Kernel.writeFully(pair[1], """
          {"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}}, "capabilities": []}}
          {"return": {}}
          {"event": "RESUME", "timestamp": {"seconds": 1}}
          {"return": {"status": "running", "running": true}}
          {"error": {"class": "GenericError", "desc": "no such thing"}}
          """);
      qmp.handshake();
      assertThat(qmp.version()).isEqualTo("10.0.2");
      assertThat(qmp.execute("query-status").path("running").asBoolean()).isTrue();
      assertThat(qmp.events()).hasSize(1);
      org.assertj.core.api.Assertions.assertThatThrownBy(() -> qmp.execute("nope"))
          .hasMessageContaining("nope: no such thing");
      assertThat(new String(Kernel.read(pair[1], 4096)))
          .isEqualTo("{\"execute\":\"qmp_capabilities\"}\n{\"execute\":\"query-status\"}\n{\"execute\":\"nope\"}\n");
      Kernel.close(pair[1]);
      org.assertj.core.api.Assertions.assertThatThrownBy(() -> qmp.execute("query-status"))
          .hasMessageContaining("closed its QMP socket");
    }
  }
}
