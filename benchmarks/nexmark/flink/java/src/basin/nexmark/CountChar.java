package basin.nexmark;

import org.apache.flink.table.functions.ScalarFunction;

/**
 * count_char(text, c): how many times the first character of c occurs in
 * text (0 for NULL text). The UDF of Nexmark q14, as Flink's Nexmark
 * (nexmark-flink's CountChar) defines it.
 */
public class CountChar extends ScalarFunction {
    public long eval(String s, String character) {
        long count = 0;
        if (s != null) {
            char needle = character.charAt(0);
            for (int i = 0; i < s.length(); i++) {
                if (s.charAt(i) == needle) {
                    count++;
                }
            }
        }
        return count;
    }
}
