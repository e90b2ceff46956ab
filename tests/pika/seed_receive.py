# The seed's consumer (shared/seeds/), unchanged apart from the port. It
# consumes forever: the test runs it with a timeout and reads its output.
import os
import pika
import time

# 连接到RabbitMQ服务器
connection = pika.BlockingConnection(pika.ConnectionParameters('localhost', int(os.environ['AMQP_PORT'])))
channel = connection.channel()

# 创建一个队列
channel.queue_declare(queue='hello')

# 获取消息
def callback(ch, method, properties, body):
    print(" [x] Received %r" % body)
    time.sleep(body.count('.'))
    print(" [x] Done")

# 设置消费者
channel.basic_consume(queue='hello', on_message_callback=callback, auto_ack=True)

# 开始消费
print(' [*] Waiting for messages. To exit press CTRL+C')
channel.start_consuming()

# 关闭连接
connection.close()
