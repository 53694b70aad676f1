package dev.vfiovm.controller;

import dev.vfiovm.api.Quantities;
import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;
import picocli.CommandLine;

class OperatorCommandTest {
  static OperatorCommand parse(String... args) {
    OperatorCommand command = new OperatorCommand();
    new CommandLine(command).parseArgs(args);
    return command;
  }

  @Test
  void defaultsAreTheDocumentedOnes() {
    // the test JVM has none of the VFIOVM_* variables set
    OperatorCommand command = parse();
    OperatorSettings s = command.settings();
    assertThat(s.uidRangeStart()).isEqualTo(0x70000000L);
    assertThat(s.uidRangeSize()).isEqualTo(65536);
    assertThat(s.memlockOverheadBytes()).isEqualTo(1L << 30);
    assertThat(s.hostReserveBytes()).isEqualTo(2L << 30);
    assertThat(s.nodePodServiceAccount()).isEqualTo("vfiovm-node");
    assertThat(s.nodePodNamespace()).isEqualTo(System.getenv("POD_NAMESPACE") != null
        ? System.getenv("POD_NAMESPACE") : "vfiovm-system");
    assertThat(command.httpPort).isEqualTo(8080);
    assertThat(command.logging.level()).isEqualTo("info");
    assertThat(command.leaderElection).isEqualTo("auto");
  }

  @Test
  void optionsTakeKubernetesQuantities() {
    OperatorCommand command = parse("--uid-range-start", "100000", "--uid-range-size", "10",
        "--memlock-overhead", "512Mi", "--host-reserve", "4Gi", "--node-pod-namespace", "vms-system",
        "--node-pod-image", "registry/vfiovm:1", "--http-port", "9090", "--leader-election", "false");
    OperatorSettings s = command.settings();
    assertThat(s.uidRange()).isEqualTo(new UidRange(100000, 10));
    assertThat(s.memlockOverheadBytes()).isEqualTo(512L << 20);
    assertThat(s.hostReserveBytes()).isEqualTo(4L << 30);
    assertThat(s.nodePodNamespace()).isEqualTo("vms-system");
    assertThat(s.nodePodImage()).isEqualTo("registry/vfiovm:1");
    assertThat(command.httpPort).isEqualTo(9090);
    assertThat(command.leaderElectionEnabled()).isFalse();
  }

  @Test
  void badValuesAreRefusedWithTheOptionsName() {
    CommandLine cl = new CommandLine(new OperatorCommand());
    var err = new java.io.StringWriter();
    cl.setErr(new java.io.PrintWriter(err));
    assertThat(cl.execute("--host-reserve", "lots")).isNotZero();
    assertThat(err.toString()).contains("--host-reserve").contains("lots");
  }

  @Test
  void theSubcommandIsWiredIntoTheJarsEntryPoint() {
    assertThat(new CommandLine(new dev.vfiovm.Main()).getSubcommands()).containsKey("operator");
  }
}
