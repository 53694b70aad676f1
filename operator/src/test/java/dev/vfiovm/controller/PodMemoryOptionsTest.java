package dev.vfiovm.controller;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;
import picocli.CommandLine;

/** The node pod's memory overheads are operator settings (--vmm-overhead, --agent-memory), as quantities. */
class PodMemoryOptionsTest {
  static OperatorSettings settings(String... args) {
    OperatorCommand command = new OperatorCommand();
    new CommandLine(command).parseArgs(args);
    return command.settings();
  }

  @Test
  void defaultsAreTheMeasuredOnes() {
    OperatorSettings s = settings();
    assertThat(s.vmmOverheadBytes()).isEqualTo(NodePodShape.VMM_OVERHEAD_BYTES).isEqualTo(256L << 20);
    assertThat(s.agentMemoryBytes()).isEqualTo(NodePodShape.AGENT_MEMORY_BYTES).isEqualTo(320L << 20);
  }

  @Test
  void optionsTakeQuantitiesAndReachThePodMemory() {
    OperatorSettings s = settings("--vmm-overhead", "1Gi", "--agent-memory", "400Mi");
    assertThat(s.vmmOverheadBytes()).isEqualTo(1L << 30);
    assertThat(s.agentMemoryBytes()).isEqualTo(400L << 20);
    assertThat(NodePodShape.podMemoryBytes(2L << 30, s)).isEqualTo((3L << 30) + (400L << 20));
  }
}
