package basin.nexmark;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.util.Collections;
import java.util.Set;

import org.apache.flink.api.connector.sink2.Sink;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.api.connector.sink2.WriterInitContext;
import org.apache.flink.configuration.ConfigOption;
import org.apache.flink.configuration.ConfigOptions;
import org.apache.flink.table.connector.ChangelogMode;
import org.apache.flink.table.connector.sink.DynamicTableSink;
import org.apache.flink.table.connector.sink.SinkV2Provider;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.factories.DynamicTableSinkFactory;
import org.apache.flink.table.factories.FactoryUtil;
import org.apache.flink.types.RowKind;

/**
 * The 'blackhole' connector that also counts what it drops: connector
 * 'basin-counting-blackhole' with option 'path'. Like Flink's blackhole it
 * accepts every row kind but UPDATE_BEFORE (so the planner makes the same
 * plan), drops each row after one counter increment, and when the writer
 * closes it writes "insert=N update_after=N delete=N" to PATH.SUBTASK.
 * The Nexmark benchmark (benchmarks/run-nexmark.sh) uses it so that the
 * measured run is also the run whose output rows are counted.
 */
public class CountingBlackHoleFactory implements DynamicTableSinkFactory {
    public static final String IDENTIFIER = "basin-counting-blackhole";
    public static final ConfigOption<String> PATH =
            ConfigOptions.key("path").stringType().noDefaultValue()
                    .withDescription("Where each subtask writes its counts (PATH.SUBTASK).");

    @Override
    public String factoryIdentifier() {
        return IDENTIFIER;
    }

    @Override
    public Set<ConfigOption<?>> requiredOptions() {
        return Collections.singleton(PATH);
    }

    @Override
    public Set<ConfigOption<?>> optionalOptions() {
        return Collections.emptySet();
    }

    @Override
    public DynamicTableSink createDynamicTableSink(Context context) {
        FactoryUtil.TableFactoryHelper helper = FactoryUtil.createTableFactoryHelper(this, context);
        helper.validate();
        return new CountingSink(helper.getOptions().get(PATH));
    }

    static final class CountingSink implements DynamicTableSink {
        private final String path;

        CountingSink(String path) {
            this.path = path;
        }

        @Override
        public ChangelogMode getChangelogMode(ChangelogMode requested) {
            ChangelogMode.Builder builder = ChangelogMode.newBuilder();
            for (RowKind kind : requested.getContainedKinds()) {
                if (kind != RowKind.UPDATE_BEFORE) {
                    builder.addContainedKind(kind);
                }
            }
            return builder.build();
        }

        @Override
        public SinkRuntimeProvider getSinkRuntimeProvider(Context context) {
            return SinkV2Provider.of(new CountingDiscardSink(path));
        }

        @Override
        public DynamicTableSink copy() {
            return new CountingSink(path);
        }

        @Override
        public String asSummaryString() {
            return "CountingBlackHole";
        }
    }

    static final class CountingDiscardSink implements Sink<RowData> {
        private static final long serialVersionUID = 1L;
        private final String path;

        CountingDiscardSink(String path) {
            this.path = path;
        }

        @Override
        public SinkWriter<RowData> createWriter(WriterInitContext context) {
            return new Writer(path + "." + context.getTaskInfo().getIndexOfThisSubtask());
        }
    }

    static final class Writer implements SinkWriter<RowData> {
        private final String path;
        private long inserts;
        private long updatesBefore;
        private long updatesAfter;
        private long deletes;

        Writer(String path) {
            this.path = path;
        }

        @Override
        public void write(RowData row, Context context) {
            switch (row.getRowKind()) {
                case INSERT:
                    inserts++;
                    break;
                case UPDATE_AFTER:
                    updatesAfter++;
                    break;
                case DELETE:
                    deletes++;
                    break;
                default:
                    updatesBefore++;
            }
        }

        @Override
        public void flush(boolean endOfInput) {}

        @Override
        public void close() throws IOException {
            String text = "insert=" + inserts + " update_before=" + updatesBefore
                    + " update_after=" + updatesAfter + " delete=" + deletes + "\n";
            Path target = Paths.get(path);
            Path tmp = Paths.get(path + ".tmp");
            Files.write(tmp, text.getBytes(StandardCharsets.UTF_8));
            Files.move(tmp, target, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        }
    }
}
