package dev.vfiovm.nodedaemon;

import static org.assertj.core.api.Assertions.assertThat;

import java.time.Duration;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

class NodeDaemonCommandTest {
  @Test
  void theSharedUidRangeIsTheOperatorsAndWordedForTheAudit() {
    NodeDaemonCommand command = new NodeDaemonCommand();
    CommandLine cl = new CommandLine(command);
    cl.parseArgs("--uid-range-start", "100000", "--uid-range-size", "10");
    assertThat(command.uidRange.start()).isEqualTo(100000);
    assertThat(command.uidRange.size()).isEqualTo(10);
    assertThat(command.logging.level()).isEqualTo("info");
    String usage = cl.getUsageMessage(CommandLine.Help.Ansi.OFF);
    // node-daemon's own wording from NodeDaemonCommand.properties, not the operator's
    assertThat(usage).contains("First UID of the audited range: the operator's").contains("Number of UIDs in the range")
        .doesNotContain("given to VMs");
  }

  @Test
  void durationsTakeTheKubernetesForms() {
    assertThat(NodeDaemonCommand.parse("500ms")).isEqualTo(Duration.ofMillis(500));
    assertThat(NodeDaemonCommand.parse("2m")).isEqualTo(Duration.ofMinutes(2));
  }
}
