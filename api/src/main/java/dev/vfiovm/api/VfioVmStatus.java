package dev.vfiovm.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import io.fabric8.crd.generator.annotation.SchemaFrom;
import io.fabric8.kubernetes.api.model.Condition;
import java.util.ArrayList;
import java.util.List;

@JsonInclude(JsonInclude.Include.NON_NULL)
/** The VfioVm's status; the fields it shares with the agent's report are {@link PinnedMemory}'s. */
public class VfioVmStatus extends PinnedMemory {
  /** Condition types, in the order the flow sets them. */
  public static final String UID_ASSIGNED = "UidAssigned";
  public static final String PLACED = "Placed";
  public static final String MEMLOCK_LIMITED = "MemlockLimited";
  public static final String DMA_MAPPED = "DmaMapped";
  public static final String READY = "Ready";

  @JsonPropertyDescription("Pending, Placed, Starting, Running, Failed, Stopped (the guest powered off: every pin released) or Terminating.")
  private Phase phase;

  @JsonPropertyDescription("Human-readable summary of the current phase; on Failed, what to change.")
  private String message;

  @JsonPropertyDescription("Node the VM is placed on.")
  private String nodeName;

  @JsonPropertyDescription("Namespace/name of the node pod that runs the VM's node agent.")
  private String podName;

  @JsonPropertyDescription(
      "Where to see the guest's serial console, set once the node pod is created: the command "
          + "(kubectl logs -n <node-pod namespace> <pod> -c node-agent), or none when spec.console is None.")
  private String console;

  @JsonPropertyDescription("UidAssigned, Placed, MemlockLimited, DmaMapped and Ready, each with reason and message.")
  @SchemaFrom(type = ConditionSchema[].class)
  private List<Condition> conditions = new ArrayList<>();

  @JsonPropertyDescription("metadata.generation of the spec this status describes.")
  private Long observedGeneration;

  public Phase getPhase() {
    return phase;
  }

  public void setPhase(Phase phase) {
    this.phase = phase;
  }

  public String getMessage() {
    return message;
  }

  public void setMessage(String message) {
    this.message = message;
  }

  public String getNodeName() {
    return nodeName;
  }

  public void setNodeName(String nodeName) {
    this.nodeName = nodeName;
  }

  public String getPodName() {
    return podName;
  }

  public void setPodName(String podName) {
    this.podName = podName;
  }

  public String getConsole() {
    return console;
  }

  public void setConsole(String console) {
    this.console = console;
  }

  public List<Condition> getConditions() {
    return conditions;
  }

  public void setConditions(List<Condition> conditions) {
    this.conditions = conditions == null ? new ArrayList<>() : conditions;
  }

  public Long getObservedGeneration() {
    return observedGeneration;
  }

  public void setObservedGeneration(Long observedGeneration) {
    this.observedGeneration = observedGeneration;
  }
}
